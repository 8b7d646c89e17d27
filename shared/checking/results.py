"""A learner's check results, kept: every ``make check`` saves its verdict, and ``make progress`` reads them back.

    make progress

    Rung                              Checked                  Verdict
    01 When (not) to fine-tune        -                        · not started
    02 SFT                            2026-12-05 14:02         ✓ done (2 written answers for review)
    03 LoRA                           2026-12-05 15:40         ✗ not yet: 9 of 12 criteria
    04 QLoRA                          2026-12-04 10:11         ✓ done -- the notebook changed since: check again

Nothing is run again: the verdicts are those of the last check of each rung, saved under
``outputs/checks/NN.json`` with a hash of the notebook it checked, so a notebook edited since is said to be.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from shared.paths import REPO_ROOT

NOT_STARTED, DONE, NOT_YET = "· not started", "✓ done", "✗ not yet"


def results_folder() -> Path:
    """outputs/checks, beside the notebooks' own outputs (FT_OUTPUTS moves both)."""
    return Path(os.environ.get("FT_OUTPUTS", REPO_ROOT / "outputs")) / "checks"


def notebook_hash(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def save(report, notebook: Path) -> Path:
    """Keep the verdict of one check of `notebook` (a Report), replacing the rung's previous one."""
    folder = results_folder()
    folder.mkdir(parents=True, exist_ok=True)
    met = sum(c.status in ("pass", "review") for c in report.criteria)
    record = {"rung": report.rung, "notebook": str(Path(notebook).resolve()), "sha256": notebook_hash(notebook),
              "checked_at": time.strftime("%Y-%m-%d %H:%M"), "passed": report.passed, "met": met,
              "criteria": len(report.criteria), "needs_review": len(report.needs_review)}
    path = folder / f"{report.rung}.json"
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def load(rung: str) -> dict | None:
    path = results_folder() / f"{rung}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):   # never checked, or a file we cannot read: not started, not a crash
        return None


def verdict(record: dict | None, exercise: Path | None = None) -> str:
    """One rung's line: not started, done or not yet, whether the notebook changed since its check, and which
    notebook it was when not the rung's `exercise` (``make check NOTEBOOK=a-copy.ipynb`` saves its verdict too)."""
    if record is None:
        return NOT_STARTED
    if record["passed"]:
        text = DONE
        if record.get("needs_review"):
            text += f" ({record['needs_review']} written answer{'s' if record['needs_review'] > 1 else ''} for review)"
    else:
        text = f"{NOT_YET}: {record['met']} of {record['criteria']} criteria"
    if notebook_hash(Path(record["notebook"])) != record["sha256"]:
        text += " -- the notebook changed since: check again"
    if exercise is not None and Path(record["notebook"]) != Path(exercise).resolve():
        text += f" -- of {_shown(Path(record['notebook']))}, not the rung's exercise.ipynb"
    return text


def _shown(path: Path) -> str:
    """A path inside the course as the learner types it (rungs/06-dpo/try.ipynb); any other in full."""
    try:
        return path.relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return str(path)


def table(rungs) -> list[str]:
    """The progress table's lines for `rungs` (the manifest's ready rungs)."""
    lines = [f"{'Rung':<36}{'Checked':<19}Verdict"]
    for rung in rungs:
        record = load(rung.number)
        checked = record["checked_at"] if record else "-"
        lines.append(f"{rung.number + ' ' + rung.title:<36.35}{checked:<19}"
                     f"{verdict(record, REPO_ROOT / rung.exercise)}")
    return lines


def main() -> int:
    from shared import course

    ready = course.ready_rungs()
    print("\n".join(table(ready)))
    done = sum(1 for rung in ready if (load(rung.number) or {}).get("passed"))
    print(f"\n{done} of {len(ready)} rungs done. `make check RUNG=NN` checks one and updates this table.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
