"""A class's submissions: which learner handed in which rung's notebook.

A submissions folder holds one entry per learner -- a folder, or a zip of one -- named after the learner:

    submissions/
        ada/02-sft.ipynb              a notebook named after its rung's folder ...
        ada/03-lora/exercise.ipynb    ... or kept in a folder of that name, as the course has it
        grace.zip                     the same, zipped (rungs/02-sft/exercise.ipynb inside is fine too)

A notebook is matched to a rung by its own name or by the name of a folder above it: ``02-sft``, ``02``, ``02_sft``
or ``sft`` at the start of the name. Anything that matches no rung, or a second notebook for a rung, is reported
rather than guessed at.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from shared import course

MAX_UNZIPPED_BYTES = 512 * 1024 * 1024   # a zip bomb stops here, not the disk
IGNORED_PARTS = {".ipynb_checkpoints", "__MACOSX", "__pycache__"}
LEARNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


@dataclass
class Submission:
    learner: str
    source: Path                                              # the folder or zip as handed in
    notebooks: dict[str, Path] = field(default_factory=dict)  # rung number -> notebook inside `folder`
    folder: Path | None = None                                # where its files are (a zip: unpacked)
    problems: list[str] = field(default_factory=list)         # what could not be matched or unpacked
    unclear: dict[str, str] = field(default_factory=dict)     # rung number -> why no one notebook is graded


def learner_name(entry: Path) -> str:
    return entry.stem if entry.suffix.lower() == ".zip" else entry.name


def discover(submissions: Path, unpack_to: Path, rungs: list[course.Rung]) -> list[Submission]:
    """Every learner's submission in `submissions`, its notebooks matched to `rungs`; zips unpacked under
    `unpack_to`."""
    if not submissions.is_dir():
        raise ValueError(f"{submissions} is not a folder: SUBMISSIONS= names a folder with one subfolder or zip "
                         "per learner")
    found = []
    for entry in sorted(submissions.iterdir()):
        if entry.name.startswith(".") or entry.name in IGNORED_PARTS:
            continue
        if not (entry.is_dir() or entry.suffix.lower() == ".zip"):
            continue
        submission = Submission(learner_name(entry), entry)
        if not LEARNER_NAME.match(submission.learner):
            submission.problems.append(f"{entry.name!r} is not a usable learner name (letters, digits, . _ @ + -)")
            found.append(submission)
            continue
        try:
            submission.folder = entry if entry.is_dir() else unzip(entry, unpack_to / submission.learner)
        except ValueError as error:
            submission.problems.append(str(error))
            found.append(submission)
            continue
        match_notebooks(submission, rungs)
        found.append(submission)
    return found


def unzip(archive: Path, destination: Path) -> Path:
    """Unpack a learner's zip, refusing what could write outside `destination` or fill the disk."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
                raise ValueError(f"{archive.name} unpacks to more than {MAX_UNZIPPED_BYTES // 2**20} MB")
            for member in members:
                name = PurePosixPath(member.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise ValueError(f"{archive.name} holds {member.filename!r}, a path outside the zip's own folder")
                if (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ValueError(f"{archive.name} holds a symbolic link ({member.filename}); send the file itself")
                target = destination.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{archive.name} is not a readable zip ({error})") from error
    return destination


def rung_of(path: Path, root: Path, rungs: list[course.Rung]) -> str | None:
    """The rung a notebook belongs to, by its own name, then by the folders above it (nearest first)."""
    names = [path.stem] + [part for part in reversed(path.relative_to(root).parent.parts)]
    for name in names:
        number = _rung_named(name, rungs)
        if number:
            return number
    return None


def _rung_named(name: str, rungs: list[course.Rung]) -> str | None:
    lowered = name.lower().replace("_", "-").replace(" ", "-")
    for rung in rungs:
        if re.match(rf"^({rung.number}|{re.escape(rung.slug)})(-|$)", lowered):
            return rung.number
    return None


def match_notebooks(submission: Submission, rungs: list[course.Rung]) -> None:
    candidates: dict[str, list[Path]] = {}
    for path in sorted(submission.folder.rglob("*.ipynb")):
        relative = path.relative_to(submission.folder)
        if IGNORED_PARTS & set(relative.parts) or path.is_symlink():
            continue
        number = rung_of(path, submission.folder, rungs)
        if number is None:
            submission.problems.append(f"{relative} matches no rung (name it after the rung, e.g. 02-sft.ipynb)")
            continue
        candidates.setdefault(number, []).append(path)
    for number, paths in sorted(candidates.items()):
        if len(paths) > 1:
            listed = ", ".join(str(p.relative_to(submission.folder)) for p in paths)
            submission.unclear[number] = f"{len(paths)} notebooks for rung {number} ({listed}): hand in one"
            continue
        submission.notebooks[number] = paths[0]
