"""What each stage of a curation pipeline removed, told by the labels of the dirty set it ran on.

The pipeline never sees the labels (``dirty.without_labels``); the funnel does, to say what each stage took
out -- duplicates, leaks, wrong answers, or clean examples it should have kept -- and what got through.

    funnel = Funnel(labelled)                       # the dirty set with its flaw labels
    kept = funnel.stage("exact dedup", rows, exact_dedup(rows))
    funnel.table()                                  # one row per stage: kept, removed, removed by flaw
"""

from __future__ import annotations

import collections

from shared.world.tasks import FLAWS


class Funnel:
    def __init__(self, labelled: list[dict]):
        self.flaw = {row["id"]: row["flaw"] for row in labelled}
        self.start = len(labelled)
        self.stages: list[dict] = []

    def stage(self, name: str, before: list[dict], after: list[dict]) -> list[dict]:
        """Record what `name` removed from `before` (by flaw) and return `after`, the examples it kept."""
        if not isinstance(after, list):
            raise TypeError(f"{name}: the stage returned {type(after).__name__}, not the list of examples it keeps"
                            + (" -- does the function end with `return`?" if after is None else ""))
        kept = {row["id"] for row in after}
        unknown = kept - {row["id"] for row in before}
        if unknown:
            raise ValueError(f"{name} returned {len(unknown)} examples it was not given (e.g. {sorted(unknown)[0]}): "
                             "a stage keeps some of its input and adds nothing")
        removed = collections.Counter(self.flaw[row["id"]] for row in before if row["id"] not in kept)
        self.stages.append({"stage": name, "kept": len(after), "removed": sum(removed.values()),
                            **{flaw: removed.get(flaw, 0) for flaw in FLAWS}})
        self.left = collections.Counter(self.flaw[row["id"]] for row in after)
        return after

    def table(self):
        """One row per stage: examples kept, removed, and how many of each flaw it removed (``clean``: examples
        it should have kept)."""
        import pandas as pd

        return pd.DataFrame(self.stages).set_index("stage")

    def remaining(self) -> dict[str, int]:
        """The flaws of the examples the last stage kept (``clean`` for the good ones)."""
        return {flaw: self.left.get(flaw, 0) for flaw in FLAWS}
