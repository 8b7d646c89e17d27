"""What a grading run keeps: one ``Result`` per learner and rung, ``results.json``, ``grades.csv`` (one row per
learner x rung x criterion) and ``marks.json`` (the instructor's marks of written answers).

A written answer is marked once: its mark is kept under the learner, the rung, the question and a hash of the
answer's text, so grading the class again keeps every mark whose answer did not change, and asks again for the
ones that did.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The status of a whole submission for one rung.
DONE, NOT_DONE, BROKEN, MISSING = "done", "not done", "broken", "missing"
# A criterion's score in grades.csv: met 1, unmet 0, a written answer its mark (empty until marked).
CRITERION_SCORE = {"pass": 1.0, "fail": 0.0, "not checked": 0.0}
MARKS = (0.0, 0.5, 1.0)
CSV_COLUMNS = ("learner", "rung", "criterion", "status", "score", "detail", "comment")


@dataclass
class Result:
    """One learner's notebook for one rung, as graded."""
    learner: str
    rung: str                      # "02"
    rung_folder: str               # "02-sft"
    notebook: str = ""             # its path inside the submission ("" when missing)
    status: str = MISSING          # DONE, NOT_DONE, BROKEN, MISSING
    reason: str = ""               # for BROKEN and MISSING: what went wrong, in a sentence
    seconds: float = 0.0           # the whole check
    notebook_seconds: float | None = None
    criteria: list[dict] = field(default_factory=list)   # the checker's Criterion fields, with "answer" for ⚑
    hidden: list[str] = field(default_factory=list)      # the hidden tests the checker used
    content_hash: str = ""         # of the notebook and everything that grades it (reuse key)
    reused: bool = False           # taken from an earlier run: nothing graded it has changed
    log: str = ""                  # the check's own output, kept beside the results (relative path)
    refused: list[str] = field(default_factory=list)     # what the jail refused the notebook's code (tried to)

    @classmethod
    def from_json(cls, data: dict) -> "Result":
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    def to_json(self) -> dict:
        return asdict(self)

    def failed_criteria(self) -> list[dict]:
        return [c for c in self.criteria if c["status"] == "fail"]

    def written_answers(self) -> list[dict]:
        return [c for c in self.criteria if c["status"] == "review"]


def answer_key(result: Result, criterion: dict) -> str:
    """Where a written answer's mark is kept: the learner, the rung, the question and the text's hash."""
    digest = hashlib.sha256(criterion.get("answer", "").encode("utf-8")).hexdigest()[:16]
    return f"{result.learner}|{result.rung}|{criterion['name']}|{digest}"


def read_results(folder: Path) -> list[Result]:
    path = folder / "results.json"
    if not path.exists():
        return []
    return [Result.from_json(item) for item in json.loads(path.read_text(encoding="utf-8"))]


def write_results(folder: Path, results: list[Result]) -> Path:
    path = folder / "results.json"
    ordered = sorted(results, key=lambda r: (r.learner, r.rung))
    path.write_text(json.dumps([r.to_json() for r in ordered], indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def read_marks(folder: Path) -> dict[str, dict]:
    """answer key -> {"mark": 0, 0.5 or 1, "comment": "..."}."""
    path = folder / "marks.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def save_marks(folder: Path, new_marks: dict[str, dict], results: list[Result]) -> dict[str, dict]:
    """Add an instructor's marks to marks.json (a mark for an answer no result holds is refused), then write
    grades.csv again. Returns every mark kept."""
    known = {answer_key(r, c) for r in results for c in r.written_answers()}
    marks = read_marks(folder)
    for key, entry in new_marks.items():
        if key not in known:
            raise ValueError(f"no written answer {key!r} in this grading run (graded again since?)")
        mark = float(entry.get("mark"))
        if mark not in MARKS:
            raise ValueError(f"a mark is one of {', '.join(map(str, MARKS))}; got {mark}")
        marks[key] = {"mark": mark, "comment": str(entry.get("comment", ""))[:2000]}
    (folder / "marks.json").write_text(json.dumps(marks, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    write_grades_csv(folder, results, marks)
    return marks


def grade_rows(results: list[Result], marks: dict[str, dict]):
    """grades.csv's rows: one per learner, rung and criterion; a missing or broken submission gets one row
    saying why."""
    for result in sorted(results, key=lambda r: (r.learner, r.rung)):
        if not result.criteria:
            yield {"learner": result.learner, "rung": result.rung, "criterion": "(submission)",
                   "status": result.status, "score": 0.0, "detail": result.reason, "comment": ""}
            continue
        for criterion in result.criteria:
            row = {"learner": result.learner, "rung": result.rung, "criterion": criterion["name"],
                   "status": criterion["status"], "score": CRITERION_SCORE.get(criterion["status"], ""),
                   "detail": criterion.get("detail", ""), "comment": ""}
            if criterion["status"] == "review":
                mark = marks.get(answer_key(result, criterion))
                row["score"] = "" if mark is None else mark["mark"]
                row["comment"] = "" if mark is None else mark["comment"]
            yield row


def write_grades_csv(folder: Path, results: list[Result], marks: dict[str, dict] | None = None) -> Path:
    path = folder / "grades.csv"
    marks = read_marks(folder) if marks is None else marks
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(grade_rows(results, marks))
    return path
