"""Progress bars for long cells: shown in Jupyter and terminals, silent under CI or FT_QUIET=1."""

import os

from tqdm.auto import tqdm


def quiet() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("FT_QUIET") == "1"


def progress(iterable, **kwargs):
    return tqdm(iterable, disable=quiet(), leave=False, **kwargs)
