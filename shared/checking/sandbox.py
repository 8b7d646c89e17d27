"""The learner's graded functions run in a process of their own, never inside the checker.

Taking a function out of a notebook executes the notebook's imports, constants and class bodies; calling it
runs whatever the learner wrote. In the checker's own process that code could patch the very reference it is
compared with, or the checker itself. So the functions live in a child process: the checker sends the
arguments of each call, computes its expected values itself, and compares with what comes back. The child
also watches each call for the references the function may not reach (``shared.checking.guards``).

    with GradedFunctions(notebook, ["is_correct"], {"is_correct": rule}) as graded:
        graded["is_correct"]("Fenwick", "Fenwick", "closed_qa")   # runs in the child, returns True

A tensor still attached to its autograd graph cannot travel back, so a checker that needs a gradient passes
inputs that require grad and gets ``WithGradients`` (the value, and d(sum of it)/d(each such input)) instead.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from typing import NamedTuple

from shared.checking.guards import Forbidden, ForbiddenCall, call_watched

# The children are forked from a server process that has imported the heavy libraries once: a fresh process for
# every notebook, without paying torch's and transformers' import each time. The server holds nothing of the
# checker's (it is started clean, before any learner code runs, and only imports these). The course's own modules
# come first: shared/__init__ quiets library warnings and puts off imports no check needs, for all that follows.
PRELOAD = ["shared.checking.guards", "shared.notebooks.graded", "torch", "transformers", "peft", "trl"]
CALL_TIMEOUT_S = float(os.environ.get("FT_GRADED_CALL_TIMEOUT", 300))  # one call; generous for a slow laptop
START_TIMEOUT_S = 300  # the child imports what the notebook imports (torch, transformers: seconds, not minutes)


class WithGradients(NamedTuple):
    """What a graded call returns when some tensor argument requires grad: the value (detached), and the
    gradient of the value's sum with respect to each such argument, in order -- None where the value does not
    depend on it (a loss built from ``logps.detach()`` has the right value and no gradient)."""
    value: object
    gradients: list


class GradedError(Exception):
    """The learner's function raised; the message is what the learner would see (type, message, line)."""


class SandboxFailure(Exception):
    """The child could not answer: it hung, died, or returned something that cannot be sent back."""


def _describe(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    lines = [frame.lineno for frame in frames if frame.filename == "<notebook>"]
    where = f" (line {lines[-1]} of its cell)" if lines else ""
    return f"{type(error).__name__}: {error}{where}{_unkept_name(error)}"


def _unkept_name(error: BaseException) -> str:
    """Why a name the notebook defines can be missing here: the checker took only some of its statements."""
    if not isinstance(error, NameError) or not getattr(error, "name", None):
        return ""
    from shared.notebooks.graded import KEPT

    return (f". The checker takes from your notebook only {KEPT}: if your notebook makes {error.name!r} some "
            "other way, make it inside the function that uses it")


def _child(connection, notebook_json: str, names: list[str], rules: dict) -> None:
    """The child: in a scratch outputs folder, take the functions out of the notebook and answer calls."""
    import tempfile

    # Taking the functions out runs the notebook's constants, and `OUT = outputs_dir("03-lora")` makes a folder:
    # here it is a scratch one, never the learner's outputs/ (which the checker leaves as it found it).
    scratch = tempfile.TemporaryDirectory(prefix="ft-graded-")
    os.environ["FT_OUTPUTS"] = scratch.name
    os.environ["FT_QUIET"] = "1"   # as in the checker's run of the notebook: no bars, and configs say so
    from shared.checking import jail

    jail.enter()  # when an instructor grades a class: this learner's code stays in its own folder
    try:
        _serve(connection, notebook_json, names, rules)
    finally:
        scratch.cleanup()


def _serve(connection, notebook_json: str, names: list[str], rules: dict) -> None:
    """Take the functions out of the notebook, then answer calls until told to stop."""
    import nbformat

    from shared.notebooks import graded

    try:
        nb = nbformat.reads(notebook_json, as_version=4)
        functions = graded.extract_functions(nb, names, missing_ok=True)
    except Exception as error:  # noqa: BLE001 -- reported to the checker, which turns it into a ✗
        connection.send(("broken", _describe(error)))
        return
    connection.send(("ready", sorted(functions)))
    while True:
        request = connection.recv()
        if request is None:
            return
        name, args, kwargs = request
        try:
            result = _with_gradients(call_watched(functions[name], args, kwargs, rules.get(name)), args, kwargs)
        except NotImplementedError:
            connection.send(("not-written", ""))
            continue
        except ForbiddenCall as refused:
            connection.send(("forbidden", str(refused)))
            continue
        except BaseException as error:  # noqa: BLE001 -- a learner's function may raise anything
            connection.send(("raised", _describe(error)))
            continue
        try:
            connection.send(("returned", result))
        except Exception as error:  # noqa: BLE001 -- e.g. a generator or a lambda
            connection.send(("unsendable", _unsendable(result, error)))


def _unsendable(result, error: Exception) -> str:
    """What the learner returned that cannot travel back to the checker, said so that they can fix it."""
    if getattr(result, "requires_grad", False):   # PyTorch will not send a tensor with its autograd graph
        return (f"{type(result).__name__} that still holds the autograd graph of the model's forward pass "
                f"(requires_grad=True): compute it under torch.no_grad(), as an evaluation should")
    return f"{type(result).__name__} ({error})"


# Set on a model passed to a graded function (``want_parameter_gradients``): the call's gradients are then also
# taken with respect to the model's trainable parameters, in ``model.parameters()`` order.
PARAMETER_GRADIENTS = "_checker_wants_parameter_gradients"


def want_parameter_gradients(model):
    """Mark `model` so that a graded call given it returns WithGradients with respect to its trainable parameters
    (a penalty on the weights must carry its gradient back to them). Returns the model."""
    setattr(model, PARAMETER_GRADIENTS, True)
    return model


def _gradient_inputs(args, kwargs) -> list:
    """What the checker asked gradients for: tensor arguments that require grad, and the trainable parameters of
    a model marked by ``want_parameter_gradients``."""
    import torch

    wanted = []
    for argument in (*args, *kwargs.values()):
        if isinstance(argument, torch.Tensor) and argument.requires_grad:
            wanted.append(argument)
        elif isinstance(argument, torch.nn.Module) and getattr(argument, PARAMETER_GRADIENTS, False):
            wanted.extend(p for p in argument.parameters() if p.requires_grad)
    return wanted


def _with_gradients(result, args, kwargs):
    """`result`, or WithGradients when the checker asked for gradients by passing tensors that require grad
    (a tensor still attached to its graph cannot be sent back as it is)."""
    import torch

    wanted = _gradient_inputs(args, kwargs)
    if not wanted:
        return result
    if not (isinstance(result, torch.Tensor) and result.requires_grad):
        return WithGradients(result.detach() if isinstance(result, torch.Tensor) else result, [None] * len(wanted))
    gradients = torch.autograd.grad(result.sum(), wanted, allow_unused=True)
    return WithGradients(result.detach(), [None if g is None else g.detach() for g in gradients])


def value_and_gradients(result, inputs: list) -> tuple:
    """(value, gradients) of what a graded function returned for `inputs` (tensors that require grad): from the
    child's WithGradients, or -- for a function called in this process, as the tests call one -- by autograd
    here. A gradient is None where the value does not depend on that input."""
    import torch

    if isinstance(result, WithGradients):
        return result.value, result.gradients
    if isinstance(result, torch.Tensor) and result.requires_grad:
        gradients = torch.autograd.grad(result.sum(), inputs, allow_unused=True)
        return result.detach(), list(gradients)
    return result, [None] * len(inputs)


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # takes effect when the server starts, on the first call
    return context


class GradedFunctions:
    """The graded functions of one notebook, served by a child process started on first use."""

    def __init__(self, notebook, names: list[str], rules: dict[str, Forbidden] | None = None):
        import nbformat

        self._notebook_json = nbformat.writes(notebook)
        self.names = list(names)
        self.rules = dict(rules or {})
        self._process = self._connection = None
        self._defined: set[str] | None = None
        self._broken = ""

    # -- the child --------------------------------------------------------------------------------
    def _start(self) -> None:
        context = _context()
        self._connection, child_end = context.Pipe()
        self._process = context.Process(target=_child, daemon=True,
                                        args=(child_end, self._notebook_json, self.names, self.rules))
        self._process.start()
        child_end.close()
        if not self._connection.poll(START_TIMEOUT_S):
            self._stop()
            self._broken = f"the notebook's imports and definitions did not load within {START_TIMEOUT_S:.0f} s"
            return
        status, payload = self._connection.recv()
        if status == "ready":
            self._defined = set(payload)
        else:
            self._broken = payload
            self._stop()

    def _stop(self) -> None:
        if self._process is not None and self._process.is_alive():
            try:
                self._connection.send(None)
            except (OSError, ValueError):
                pass
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=5)
        self._process = None

    def close(self) -> None:
        self._stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- calls ------------------------------------------------------------------------------------
    def defines(self, name: str) -> bool:
        if self._defined is None and not self._broken:
            self._start()
        return bool(self._defined) and name in self._defined

    def call(self, name: str, *args, **kwargs):
        if not self.defines(name):
            if self._broken:
                raise SandboxFailure(self._broken)
            import nbformat

            from shared.notebooks.graded import missing_message

            raise SandboxFailure(missing_message(nbformat.reads(self._notebook_json, as_version=4), [name]))
        try:
            self._connection.send((name, args, kwargs))
        except Exception as error:  # noqa: BLE001 -- the checker's own arguments; a bug if it happens
            raise SandboxFailure(f"could not send the arguments to {name} ({error})") from error
        if not self._connection.poll(CALL_TIMEOUT_S):
            self._stop()
            self._defined, self._broken = set(), f"{name} did not return within {CALL_TIMEOUT_S:.0f} s"
            raise SandboxFailure(self._broken + " (an endless loop?)")
        try:
            status, payload = self._connection.recv()
        except EOFError:
            self._stop()
            self._defined, self._broken = set(), f"{name} stopped the Python process it ran in"
            raise SandboxFailure(self._broken) from None
        if status == "returned":
            return payload
        if status == "not-written":
            raise NotImplementedError(name)
        if status == "forbidden":
            raise ForbiddenCall(f"{name} {payload}")
        if status == "unsendable":
            raise SandboxFailure(f"{name} returned a {payload}, which is not a value the checker can read")
        raise GradedError(payload)

    def function(self, name: str):
        """A stand-in for the learner's function: same call, answered by the child."""
        def graded_function(*args, **kwargs):
            return self.call(name, *args, **kwargs)

        graded_function.__name__ = name
        return graded_function
