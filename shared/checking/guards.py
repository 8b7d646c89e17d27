"""What a graded function may not reach: the reference it is checked against.

A checker compares the learner's function with a reference (TRL's tokenisation, PEFT's LoRA layer,
bitsandbytes' NF4, the course's metric). A function that simply calls that reference would pass without the
learner writing anything, however it reaches it: ``from bitsandbytes.functional import quantize_4bit`` at the
top of the notebook, a helper of their own that calls it, a constant bound to it. So the checker watches every
Python call made while the graded function runs (``sys.setprofile``) and refuses one that lands in a forbidden
module or function, naming what was called and why it is not allowed.

    rule = Forbidden(modules=("bitsandbytes",), reason="NF4 is yours to write, not bitsandbytes' to call")
    result = call_watched(nf4_quantize, (weight,), {}, rule)   # raises ForbiddenCall if it reaches one
"""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import dataclass


class ForbiddenCall(RuntimeError):
    """A graded function reached a reference it must not call; the message says which and why."""


@dataclass(frozen=True)
class Forbidden:
    """The references one graded function may not reach, by module name prefix, by function (dotted path,
    e.g. ``shared.evaluation.evals.task_metric``), or by source file (a path fragment, e.g. a metric's file
    that ``evaluate`` imports under a generated module name)."""
    reason: str
    modules: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


def _code_of(dotted: str):
    """The code object of a function named by its dotted path (None when it cannot be imported here)."""
    module_name, _, attribute = dotted.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return None
    target = getattr(target, "__wrapped__", target)  # functools.lru_cache and friends
    return getattr(target, "__code__", None)


def _matcher(rule: Forbidden):
    codes = {code: dotted for dotted in rule.functions if (code := _code_of(dotted)) is not None}
    modules = tuple(rule.modules)
    files = tuple(fragment.replace("\\", "/") for fragment in rule.files)

    def forbidden(frame) -> str | None:
        code = frame.f_code
        if code in codes:
            return codes[code]
        module = frame.f_globals.get("__name__") or ""
        if modules and any(module == m or module.startswith(m + ".") or module.startswith(m + "_")
                           for m in modules):
            return f"{module}.{code.co_name}"
        filename = code.co_filename.replace("\\", "/")
        if files and any(fragment in filename for fragment in files):
            return f"{filename}:{code.co_name}"
        return None

    return forbidden


def call_watched(function, args: tuple, kwargs: dict, rule: Forbidden | None):
    """``function(*args, **kwargs)``, refused (ForbiddenCall) if it reached anything `rule` forbids.

    A hit is recorded and judged after the call returns, so a ``try/except`` in the learner's code cannot
    swallow it; switching the watch off from inside the call is refused the same way."""
    if rule is None:
        return function(*args, **kwargs)
    forbidden = _matcher(rule)
    hits: list[str] = []

    def watch(frame, event, arg):
        if event == "call" and not hits:
            hit = forbidden(frame)
            if hit:
                hits.append(hit)

    def refused() -> ForbiddenCall:
        return ForbiddenCall(f"calls {hits[0]}, which is not allowed here: {rule.reason}")

    sys.setprofile(watch)
    threading.setprofile(watch)
    try:
        result = function(*args, **kwargs)
        still_watching = sys.getprofile() is watch
    except Exception as error:
        if hits:  # the refusal is the reason to report, not what went wrong after the forbidden call
            raise refused() from error
        raise
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    if hits:
        raise refused()
    if not still_watching:
        raise ForbiddenCall("switched off the checker's watch on what it calls (sys.setprofile), which is not "
                            "allowed here")
    return result
