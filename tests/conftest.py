"""Test-suite settings, and a timing table per notebook at the end of the run.

The environment is set at import, before nbval starts any kernel, so the solution notebooks run offline and
quietly exactly as the checker runs them.
"""

import os
import time
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FT_QUIET", "1")

_START = time.monotonic()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Seconds per notebook (nbval runs one item per cell: setup, call and teardown all count)."""
    seconds = defaultdict(float)
    for reports in terminalreporter.stats.values():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            path = nodeid.split("::", 1)[0]
            if path.endswith(".ipynb"):
                seconds[path] += getattr(report, "duration", 0.0)
    write = terminalreporter.write_line
    terminalreporter.section("time per notebook")
    if not seconds:
        write("no notebooks ran")
    for path in sorted(seconds):
        write(f"{seconds[path]:8.1f} s  {path}")
    write(f"{time.monotonic() - _START:8.1f} s  whole test suite")
