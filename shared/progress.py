"""Progress bars for long cells: shown in Jupyter and terminals, silent under CI or FT_QUIET=1."""

import contextlib
import os

from tqdm.auto import tqdm


def quiet() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("FT_QUIET") == "1"


def progress(iterable, **kwargs):
    """A bar over `iterable`, gone when it ends; none for a single step (eight one-batch scorings in a cell would
    leave eight bars that each said nothing)."""
    try:
        single_step = len(iterable) <= 1
    except TypeError:   # a generator: its length is unknown until it ends
        single_step = False
    return tqdm(iterable, disable=quiet() or single_step, leave=False, **kwargs)


def quiet_libraries() -> None:
    """Switch off the bars the libraries draw on their own where they say nothing a learner needs.

    Always: the passes a TRL trainer makes over its dataset ("Building labels", "Truncating", "Dropping fully
    masked examples"), three to five a trainer, each a second or less and each a bar left in the cell's output.
    Under CI or FT_QUIET=1 also transformers' "Loading weights" and the hub's download bars, which on the gpu
    profile measure minutes; in an executed notebook each is a screenful of 0% ... 100% lines around the figures."""
    from datasets.utils.logging import disable_progress_bar as datasets_bars_off

    datasets_bars_off()
    if not quiet():
        return
    from huggingface_hub.utils import disable_progress_bars as hub_bars_off
    from transformers.utils.logging import disable_progress_bar as transformers_bars_off

    hub_bars_off()
    transformers_bars_off()


@contextlib.contextmanager
def quiet_stderr():
    """Under CI or FT_QUIET=1, what a library writes to standard error inside the block is dropped: bars it draws
    with a tqdm it gives no way to switch off (lm-evaluation-harness's request bars), its notices. Elsewhere the
    block runs as it is, bars and all."""
    if not quiet():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield
