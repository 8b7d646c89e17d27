"""The learners' copy of the course (``make student-release DEST=dir``): lessons, exercises, checkers, ``shared/``
and the data -- no solutions, no tests, no hidden tests.

    python -m shared.grading.release DEST [--hidden DIR]

What goes in is what is *committed*: every file of the last commit (``git ls-tree HEAD``), at its committed
content, so work in progress -- an uncommitted edit, a new file not yet added -- never reaches learners half done.
A copy of the course without git history (an unpacked archive) is walked instead, build outputs skipped.

Left out: ``solutions/``, ``tests/``, ``bench/`` (but for its figures: its README and ``results/``, which the
lessons link to), ``.ci/``, any folder named ``hidden-tests``, and the hidden-tests folder (``--hidden`` or
FT_HIDDEN_TESTS) when it lies inside the repository.

The copy is then verified, and a copy that fails is reported loudly, never handed over quietly: nothing under
the folders left out, no solution marker in any notebook, every ready rung's exercise, lesson and checker
present, each exercise byte for byte the committed one.

Two files differ from the course's own, in the copy only: README.md gains a section "## This copy", and the
Makefile's targets that need what was left out (``make test``, ``make exercises``, ``make bench``, ...) say so in
one line instead of ending in a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from shared import course
from shared.checking.hidden import HIDDEN_VAR
from shared.notebooks.exercises import BEGIN_ANSWER, BEGIN_SOLUTION, END_SOLUTION
from shared.paths import REPO_ROOT

# Top-level folders that stay with the instructors, and why (the summary prints the reason).
INSTRUCTOR_ONLY = {
    "solutions": "worked solutions",
    "tests": "the course's own tests",
    "bench": "benchmarks (they run the solutions)",
    ".ci": "continuous integration",
}
# What goes in from a folder above all the same: the benchmarks' measured figures, which lessons link to (their
# scripts, which run the solutions, stay out).
PUBLISHED_FROM_INSTRUCTOR_FOLDERS = ("bench/README.md", "bench/results/")
# docs/ goes in: the README's screenshot, and the grading guide -- learners may read how they are graded; what
# must stay hidden is the instructor's own hidden tests, kept outside the course or in a hidden-tests folder.
HIDDEN_FOLDER_NAME = "hidden-tests"
NOT_COMMITTED = "not committed (commit it to release it)"

# Without git: what a working copy holds that is not the course (environments, outputs, caches, build metadata).
WALK_SKIPPED_FOLDERS = {".git", ".venv", "outputs", ".ecosystem", "__pycache__", ".ipynb_checkpoints",
                        ".pytest_cache"}
WALK_SKIPPED_SUFFIXES = (".pyc", ".egg-info")

SOLUTION_TAG = "solution-only"
SOLUTION_MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_ANSWER)

# Make targets that need what the copy leaves out. In the copy each prints this one line and exits 2.
FULL_COURSE_TARGETS = {
    "test": "runs the course's own tests and the solution notebooks",
    "exercises": "regenerates the exercises from the solutions",
    "bench": "times the solution notebooks",
    "bench-qlora": "is the course's GPU benchmark",
    "test-ecosystem": "runs the course's own test of rung 11's frameworks",
}
MUST_DISABLE = ("test", "exercises")  # a Makefile without these means the override below no longer fits it

THIS_COPY_HEADING = "## This copy"
THIS_COPY = f"""
{THIS_COPY_HEADING}

This is the learners' copy of the course: the lessons, the exercise notebooks, their checkers, `shared/` and the
data — without the worked solutions and without the course's own tests. Work in
`rungs/NN-slug/exercise.ipynb`, and when you think a rung is done, ask `make check RUNG=NN`; `make progress`
shows every rung's verdict. `make test`, `make exercises` and `make bench` belong to the full course repository
(they run the solutions and the tests), so here they only say so; where the sections above mention
`solutions/`, `tests/` or `bench/`, they describe that repository (here `bench/` holds only the benchmarks'
figures: its README and `results/`).
"""


class ReleaseError(RuntimeError):
    """The copy was made but is not fit to hand to learners; the message lists every problem found."""


# -- what to copy ------------------------------------------------------------------------------------------
def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True).stdout


def _paths(output: bytes) -> list[str]:
    return [p for p in output.decode("utf-8", "surrogateescape").split("\0") if p]


def has_history(root: Path) -> bool:
    return (root / ".git").exists() and shutil.which("git") is not None


def committed_files(root: Path) -> dict[str, str]:
    """{path: git mode} for every file of the last commit ("100644", "100755", "120000" for a link)."""
    files = {}
    for entry in _paths(_git(root, "ls-tree", "-r", "-z", "--full-tree", "HEAD")):
        meta, path = entry.split("\t", 1)
        mode, kind, _ = meta.split()
        if kind == "blob":  # a submodule ("commit") has no content here to copy
            files[path] = mode
    return files


def changed_since_commit(root: Path) -> set[str]:
    """Committed files whose working copy differs from the commit (edited, staged or deleted)."""
    return set(_paths(_git(root, "diff", "--name-only", "-z", "HEAD")))


def untracked_files(root: Path) -> list[str]:
    """Files neither committed nor ignored: staged new files and ones never added."""
    staged_new = _paths(_git(root, "diff", "--name-only", "-z", "--cached", "--diff-filter=A", "HEAD"))
    never_added = _paths(_git(root, "ls-files", "-z", "--others", "--exclude-standard"))
    return sorted(set(staged_new) | set(never_added))


def committed_content(root: Path, path: str) -> bytes:
    return _git(root, "cat-file", "blob", f"HEAD:{path}")


def walked_files(root: Path) -> list[str]:
    """Every file of a copy without history, less environments, outputs and caches."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders
                               if d not in WALK_SKIPPED_FOLDERS and not d.endswith(WALK_SKIPPED_SUFFIXES))
        for name in sorted(files):
            if not name.endswith(WALK_SKIPPED_SUFFIXES):
                found.append((Path(folder) / name).relative_to(root).as_posix())
    return found


# -- what to leave out -------------------------------------------------------------------------------------
def hidden_folder(hidden: Path | None) -> Path | None:
    """The instructor's hidden tests: --hidden, else FT_HIDDEN_TESTS, else none."""
    value = hidden or os.environ.get(HIDDEN_VAR, "").strip()
    return Path(value).expanduser().resolve() if value else None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _published(path: str) -> bool:
    return any(path == kept or (kept.endswith("/") and path.startswith(kept))
               for kept in PUBLISHED_FROM_INSTRUCTOR_FOLDERS)


def reason_left_out(path: str, root: Path, hidden: Path | None) -> str | None:
    """Why this file (relative to the repository) stays out of the learners' copy, or None when it goes in."""
    parts = path.split("/")
    if parts[0] in INSTRUCTOR_ONLY and not _published(path):
        return f"{parts[0]}/: {INSTRUCTOR_ONLY[parts[0]]}"
    if HIDDEN_FOLDER_NAME in parts[:-1]:
        return f"under a {HIDDEN_FOLDER_NAME}/ folder"
    if hidden is not None and _inside((root / path).resolve(), hidden):
        return f"the hidden tests ({HIDDEN_VAR} / --hidden)"
    return None


# -- the destination ---------------------------------------------------------------------------------------
def check_destination(dest: Path, root: Path) -> Path:
    """The resolved destination, or ValueError when writing there could overwrite someone's work or the course."""
    dest = dest.expanduser().resolve()
    root = root.resolve()
    if dest == root:
        raise ValueError(f"DEST {dest} is the course repository itself; choose a new folder outside it")
    if _inside(dest, root):
        raise ValueError(f"DEST {dest} is inside the course repository ({root}); choose a folder outside it, "
                         "or the copy would end up in the course")
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"DEST {dest} exists and is a file, not a folder")
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"DEST {dest} exists and is not empty; the release never writes over what is there -- "
                         "choose a new folder (or empty this one yourself)")
    return dest


# -- copying -----------------------------------------------------------------------------------------------
def _write_committed(root: Path, path: str, mode: str, target: Path) -> None:
    """A file whose working copy differs from the commit: write the committed content with the committed mode."""
    content = committed_content(root, path)
    if mode == "120000":  # a symbolic link: its content is where it points
        os.symlink(content.decode(), target)
        return
    target.write_bytes(content)
    target.chmod(0o755 if mode == "100755" else 0o644)


def copy_files(root: Path, dest: Path, paths: list[str], committed: dict[str, str] | None,
               changed: set[str]) -> int:
    """Copy `paths` into `dest`; returns the bytes written. Unchanged files are copied as they are (copy2: modes
    and times kept); with history, a file changed since the commit is written as committed."""
    total = 0
    for path in paths:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if committed is not None and path in changed:
            _write_committed(root, path, committed[path], target)
        else:
            shutil.copy2(root / path, target, follow_symlinks=False)
        total += target.lstat().st_size
    return total


# -- the copy's own README and Makefile ---------------------------------------------------------------------
def learners_readme(text: str) -> str:
    """The README with the section for learners appended (once)."""
    if THIS_COPY_HEADING in text:
        return text
    return text.rstrip("\n") + "\n" + THIS_COPY


def _disabled_recipe(target: str, why: str) -> str:
    message = (f"make {target} {why}: it works in the full course repository, not in this learners' copy. "
               "To check your work: make check RUNG=NN")
    return f'\t@echo "{message}" >&2; exit 2\n'


RULE_HEADER = re.compile(r"^(?P<targets>[^\s:=#][^:=]*?)\s*::?(?!=)(?P<rest>.*)$")
HELP_LINE = re.compile(r'^\t@echo "make (?P<target>[\w-]+)')
HELP_CONTINUATION = re.compile(r'^\t@echo " {2,}')
HELP_NOTE = ('\t@echo "(make test, make exercises and make bench belong to the full course repository, '
             'not this copy)"\n')


def _rules(lines: list[str]):
    """(first line, end line, targets, header) of every rule: a header line ``target: prerequisites`` (with its
    backslash continuations) followed by the tab-indented lines of its recipe."""
    index = 0
    while index < len(lines):
        match = RULE_HEADER.match(lines[index])
        if not match or "=" in match["rest"]:  # "x := 1" or a target-specific variable, not a rule
            index += 1
            continue
        start = index
        while lines[index].rstrip("\n").endswith("\\"):
            index += 1
        index += 1
        while index < len(lines) and lines[index].startswith("\t"):
            index += 1
        yield start, index, match["targets"].split(), lines[start:index]


def _shorter_help(rule: list[str]) -> list[str]:
    """The help recipe without the lines for the targets the copy cannot run, and one line saying where they are."""
    kept, skipping = [rule[0]], False
    for line in rule[1:]:
        help_line = HELP_LINE.match(line)
        if help_line:
            skipping = help_line["target"] in FULL_COURSE_TARGETS
        elif not HELP_CONTINUATION.match(line):
            skipping = False
        if not skipping:
            kept.append(line)
    return kept + ([HELP_NOTE] if HELP_NOTE not in kept else [])


def learners_makefile(text: str) -> str:
    """The course's Makefile with each full-course target's rule (prerequisites and recipe) replaced by one line
    that says where it lives, and those targets gone from `make help`. Raises ReleaseError when the Makefile no
    longer has the rules this expects, so a change to the Makefile cannot quietly leave a target unreplaced."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    out, done, position = [], set(), 0
    for start, end, targets, rule in _rules(lines):
        out += lines[position:start]
        position = end
        disabled = [t for t in targets if t in FULL_COURSE_TARGETS]
        if disabled and len(targets) > 1:
            raise ReleaseError(f"the Makefile's rule {' '.join(targets)} names {disabled[0]} with other targets; "
                               "give it a rule of its own so the learners' copy can replace it")
        if disabled:
            out += [f"{disabled[0]}:\n", _disabled_recipe(disabled[0], FULL_COURSE_TARGETS[disabled[0]])]
            done.add(disabled[0])
        elif targets == ["help"]:
            out += _shorter_help(rule)
        else:
            out += rule
    out += lines[position:]
    missing = [t for t in MUST_DISABLE if t not in done]
    if missing:
        raise ReleaseError(f"the Makefile has no rule for {', '.join(missing)}; update FULL_COURSE_TARGETS in "
                           "shared/grading/release.py to match it")
    return "".join(out)


def _rewrite(path: Path, change) -> None:
    """Replace a copied file's text; written anew, so it never writes through a link to the course's own file."""
    text = path.read_text(encoding="utf-8")
    path.unlink()
    path.write_text(change(text), encoding="utf-8")


# -- verifying the copy ------------------------------------------------------------------------------------
def solution_markers(notebook: Path) -> list[str]:
    """What in a notebook shows a solution: a marker's text in a cell, or a cell tagged solution-only."""
    import nbformat

    found = []
    for number, cell in enumerate(nbformat.read(notebook, as_version=4).cells, start=1):
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            found.append(f"cell {number} is tagged {SOLUTION_TAG}")
        found += [f"cell {number} holds {marker!r}" for marker in SOLUTION_MARKERS if marker in cell.source]
    return found


def release_problems(dest: Path, reference_exercise) -> list[str]:
    """Everything that makes the copy unfit for learners; empty when it is fine. `reference_exercise(path)` gives
    the bytes the exercise at `path` must hold (the committed one)."""
    problems = []
    for folder in INSTRUCTOR_ONLY:
        found = [p.relative_to(dest).as_posix() for p in (dest / folder).rglob("*") if p.is_file()]
        problems += [f"{path} is in the copy" for path in found if not _published(path)]
    problems += [f"{p.relative_to(dest)} is in the copy" for p in dest.rglob(HIDDEN_FOLDER_NAME)]
    for notebook in sorted(dest.rglob("*.ipynb")):
        problems += [f"{notebook.relative_to(dest)}: {found}" for found in solution_markers(notebook)]
    for rung in course.ready_rungs():
        for name in ("exercise.ipynb", "README.md", "check.py"):
            if not (dest / rung.folder / name).is_file():
                problems.append(f"{rung.folder}/{name} is missing (ready rung {rung.number}: is it committed?)")
        exercise = dest / rung.exercise
        if exercise.is_file() and exercise.read_bytes() != reference_exercise(rung.exercise):
            problems.append(f"{rung.exercise} differs from the committed exercise")
    if (dest / "README.md").is_file() and THIS_COPY_HEADING not in (dest / "README.md").read_text("utf-8"):
        problems.append(f"README.md has no {THIS_COPY_HEADING!r} section")
    return problems


def _markdown_texts(dest: Path):
    """(file, markdown text) for every .md page and every markdown cell of every notebook in the copy."""
    import nbformat

    for page in sorted(dest.rglob("*.md")):
        yield page, page.read_text(encoding="utf-8")
    for notebook in sorted(dest.rglob("*.ipynb")):
        for cell in nbformat.read(notebook, as_version=4).cells:
            if cell.cell_type == "markdown":
                yield notebook, cell.source


def dangling_links(dest: Path) -> list[str]:
    """Relative links in the copy's markdown (pages and notebooks) to a file or folder the copy does not have --
    a warning, not a failure: a lesson that links the benchmark's results, the README's screenshot under docs/."""
    found = set()
    for page, text in _markdown_texts(dest):
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" not in target and not target.startswith("mailto:") and not (page.parent / target).exists():
                found.add(f"{page.relative_to(dest)} -> {target}")
    return sorted(found)


# -- the whole release -------------------------------------------------------------------------------------
def _plan(root: Path, hidden: Path | None):
    """(files to copy, {reason: files left out}, committed modes or None, files changed since the commit)."""
    left_out: dict[str, list[str]] = {}
    if has_history(root):
        committed = committed_files(root)
        candidates, changed = sorted(committed), changed_since_commit(root)
        left_out[NOT_COMMITTED] = untracked_files(root)
    else:
        committed, candidates, changed = None, walked_files(root), set()
    copied = []
    for path in candidates:
        reason = reason_left_out(path, root, hidden)
        if reason:
            left_out.setdefault(reason, []).append(path)
        else:
            copied.append(path)
    return copied, {reason: paths for reason, paths in left_out.items() if paths}, committed, changed


def _exercise_reference(root: Path, with_history: bool):
    """What each exercise in the copy must hold: the committed file -- or, without history, the walked one."""
    if with_history:
        return lambda path: committed_content(root, path)
    return lambda path: (root / path).read_bytes()


def make_release(dest: Path, hidden: Path | None = None, root: Path = REPO_ROOT) -> dict:
    """Copy the course at `root` into the new folder `dest` for learners and verify the copy.

    Returns a summary: {"dest", "source", "files", "bytes", "left_out": {reason: [paths]}, "committed_version_of":
    [paths whose uncommitted changes were not copied], "dangling_links", "largest": [(path, bytes)]}.
    Raises ValueError for a destination it must not write to, ReleaseError when the copy fails verification."""
    root = Path(root).resolve()
    dest = check_destination(Path(dest), root)
    copied, left_out, committed, changed = _plan(root, hidden_folder(hidden))
    dest.mkdir(parents=True, exist_ok=True)
    total = copy_files(root, dest, copied, committed, changed)
    if (dest / "README.md").is_file():
        _rewrite(dest / "README.md", learners_readme)
    if (dest / "Makefile").is_file():
        _rewrite(dest / "Makefile", learners_makefile)

    problems = release_problems(dest, _exercise_reference(root, with_history=committed is not None))
    if problems:
        raise ReleaseError(f"the copy at {dest} is NOT fit for learners -- do not hand it out; delete it, fix "
                           "these and run the release again:\n  " + "\n  ".join(problems))
    sizes = sorted(((p, (dest / p).lstat().st_size) for p in copied), key=lambda item: -item[1])
    head = _git(root, "rev-parse", "--short", "HEAD").decode().strip() if committed is not None else ""
    return {"dest": str(dest), "source": f"commit {head}" if head else f"{root} (no git history: walked)",
            "files": len(copied), "bytes": total, "left_out": left_out,
            "committed_version_of": sorted(p for p in changed if p in copied),
            "dangling_links": dangling_links(dest), "largest": sizes[:5]}


# -- command line ------------------------------------------------------------------------------------------
def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def describe(summary: dict, examples: int = 3) -> str:
    """The summary in a few lines: what the copy holds, what stayed out and why, what to look at."""
    lines = [f"Learners' copy of the course ({summary['source']}) in {summary['dest']}:",
             f"  {summary['files']} files, {_megabytes(summary['bytes'])} -- the rungs' lessons, exercises and "
             "checkers, shared/, data/; README.md gained a section for learners, and the Makefile's "
             f"{', '.join(FULL_COURSE_TARGETS)} say they belong to the full course.",
             "  largest: " + ", ".join(f"{p} {_megabytes(n)}" for p, n in summary["largest"][:3]),
             "Left out:"]
    for reason, paths in summary["left_out"].items():
        shown = ", ".join(paths[:examples]) + (", ..." if len(paths) > examples else "")
        lines.append(f"  {len(paths):4d}  {reason}: {shown}")
    if summary["committed_version_of"]:
        lines.append("Copied as committed (your uncommitted changes are not in the copy): "
                     + ", ".join(summary["committed_version_of"]))
    if summary["dangling_links"]:
        lines.append("Links in the copy to something left out (fine if meant): "
                     + "; ".join(summary["dangling_links"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the learners' copy of the course: no solutions, no tests.")
    parser.add_argument("dest", type=Path, help="a new (or empty) folder outside the course repository")
    parser.add_argument("--hidden", type=Path, help=f"the hidden tests' folder (default: ${HIDDEN_VAR}), left "
                                                    "out when it lies inside the repository")
    args = parser.parse_args(argv)
    try:
        summary = make_release(args.dest, hidden=args.hidden)
    except ValueError as error:
        print(f"student-release: {error}", file=sys.stderr)
        return 2
    except ReleaseError as error:
        print(f"student-release: {error}", file=sys.stderr)
        return 1
    print(describe(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
