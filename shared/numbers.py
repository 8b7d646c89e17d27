"""Is this a number? One answer for every module that reads figures from a file a notebook wrote."""

from __future__ import annotations

import math


def is_finite_number(value) -> bool:
    """An int or float (not a bool, which Python counts as an int) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_fraction(value) -> bool:
    """A finite number in [0, 1]: an accuracy, a share."""
    return is_finite_number(value) and 0.0 <= value <= 1.0
