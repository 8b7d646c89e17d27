"""The course hangs together: README table, rung folders, badges, links, exercises in sync, doctor's parsing.

These catch what rots silently in a course repository: a hand-edited table, a badge or link to a moved file,
an exercise edited apart from its solution.
"""

import ast
import os
import re
from pathlib import Path

import pytest

from shared.notebooks import cli, colab, exercises
from shared import course, doctor
from shared.paths import REPO_ROOT, RUNGS_DIR, SOLUTIONS_DIR

README = REPO_ROOT / "README.md"
RUNG_FILES = ("README.md", "exercise.ipynb", "check.py")
COLAB_URL = re.compile(r"https://colab\.research\.google\.com/github/([^/\s]+/[^/\s]+)/blob/([^/\s]+)/"
                       r"([^)\s\"'\\]+)")
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def markdown_files() -> list[Path]:
    return [README] + sorted(RUNGS_DIR.glob("*/README.md"))


def all_markdown_files() -> list[Path]:
    """Every .md file in the repository, outside hidden folders, .venv and outputs/."""
    found = []
    for folder, subfolders, files in os.walk(REPO_ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in ("outputs", "__pycache__")]
        found += [Path(folder) / name for name in files if name.endswith(".md")]
    return sorted(found)


def notebook_files() -> list[Path]:
    return sorted(RUNGS_DIR.glob("*/*.ipynb")) + sorted(SOLUTIONS_DIR.glob("*.ipynb"))


def checker_rung(path: Path) -> str | None:
    """The rung a check.py hands to ``main(..., rung=...)``: a literal, or a module-level constant's value."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) for target in node.targets if isinstance(target, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "main":
            for keyword in node.keywords:
                if keyword.arg == "rung":
                    value = keyword.value
                    return value.value if isinstance(value, ast.Constant) else constants.get(getattr(value, "id", ""))
    return None


# -- the manifest and the README ---------------------------------------------------------------------
def test_readme_table_is_generated_from_the_manifest():
    block = course.readme_block(README.read_text(encoding="utf-8"))
    assert block == course.readme_table(), "README.md's rung table is stale: run `make readme`"


def test_manifest_numbers_and_folders_are_consistent():
    assert [r.number for r in course.RUNGS] == [f"{n:02d}" for n in range(1, 13)]   # 01-11 and the capstone
    assert course.rung(2) is course.rung("02") is course.rung("sft")
    assert course.rung("capstone") is course.rung("12")
    known = {r.name for r in course.RUNGS}
    stray_folders = {p.name for p in RUNGS_DIR.iterdir() if p.is_dir()} - known if RUNGS_DIR.exists() else set()
    stray_solutions = {p.stem for p in SOLUTIONS_DIR.glob("*.ipynb")} - known
    assert not stray_folders, f"rung folders not in shared/course.py: {sorted(stray_folders)}"
    assert not stray_solutions, f"solutions not in shared/course.py: {sorted(stray_solutions)}"


def test_readme_check_fails_on_a_stale_table():
    stale = f"intro\n{course.BEGIN}\n| old table |\n{course.END}\nrest\n"
    fresh = course.with_table(stale)
    assert course.readme_block(fresh) == course.readme_table()
    assert fresh.startswith("intro\n") and fresh.endswith("rest\n")
    assert course.with_table(fresh) == fresh


# -- each rung's files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rung", course.RUNGS, ids=lambda r: r.name)
def test_rung_files(rung):
    paths = [REPO_ROOT / rung.folder / name for name in RUNG_FILES] + [REPO_ROOT / rung.solution]
    missing = [p.relative_to(REPO_ROOT).as_posix() for p in paths if not p.exists()]
    if rung.ready:
        assert not missing, f"rung {rung.number} is marked ready but lacks {missing}"
    present = [p for p in paths if p.exists()]
    if not present:
        pytest.skip(f"rung {rung.number} is coming; nothing written yet")
    for path in present:  # what exists must be usable, ready or not
        if path.suffix == ".ipynb":
            assert exercises.read(path).cells, f"{path.name} has no cells"
        elif path.name == "check.py":
            assert checker_rung(path) == rung.number, \
                f"{rung.folder}/check.py should call main(check, rung=\"{rung.number}\")"
        elif path.name == "README.md":
            assert path.read_text(encoding="utf-8").lstrip().startswith("#"), f"{rung.folder}/README.md has no title"


def test_exercises_are_in_sync_with_their_solutions():
    stale = cli.out_of_sync()
    assert not stale, "run `make exercises`:\n" + "\n".join(stale)


# Importing these loads bitsandbytes, whose CPU backend warns on machines with AVX-512 BF16 that an optional
# kernel is missing; shared quiets that logger when it is imported, so a notebook imports them after shared.
LIBRARIES_THAT_LOAD_BITSANDBYTES = ("trl", "peft")


@pytest.mark.parametrize("solution", sorted(SOLUTIONS_DIR.glob("*.ipynb")), ids=lambda path: path.stem)
def test_notebooks_import_trl_and_peft_after_shared(solution):
    nb = exercises.read(solution)
    imports = [node for cell in nb.cells if cell.cell_type == "code"
               for node in ast.parse(cell.source).body
               if isinstance(node, (ast.Import, ast.ImportFrom))]
    modules = [(node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
               for node in imports]
    first_shared = modules.index("shared") if "shared" in modules else len(modules)
    early = sorted({name for name in modules[:first_shared] if name in LIBRARIES_THAT_LOAD_BITSANDBYTES})
    assert not early, f"{solution.name} imports {', '.join(early)} before shared: move it below the shared imports"


# -- badges and links ---------------------------------------------------------------------------------
def colab_targets() -> list[tuple[str, str, str, str]]:
    """(file, repository, branch, path) for every Colab URL in the markdown files and notebooks."""
    found = []
    for path in all_markdown_files() + notebook_files():
        for repo, branch, target in COLAB_URL.findall(path.read_text(encoding="utf-8")):
            found.append((path.relative_to(REPO_ROOT).as_posix(), repo, branch, target))
    return found


def test_readme_has_a_badge_for_every_ready_colab_rung():
    urls = {target for _, _, _, target in colab_targets()}
    expected = {r.exercise for r in course.ready_rungs() if r.colab}
    assert expected <= urls


def test_colab_badges_point_at_notebooks_that_exist():
    bad = [f"{source}: {repo}/blob/{branch}/{target}" for source, repo, branch, target in colab_targets()
           if repo != course.REPOSITORY or branch != course.BRANCH or not target.endswith(".ipynb")
           or not (REPO_ROOT / target).is_file()]
    assert not bad, "Colab URLs with a wrong repository, branch or a missing notebook:\n" + "\n".join(bad)


def test_a_notebook_badge_opens_its_own_rungs_exercise():
    wrong = []
    for source, _, _, target in colab_targets():
        if source.endswith(".ipynb"):
            rung_name = Path(source).stem if source.startswith("solutions/") else Path(source).parent.name
            if target != course.rung(rung_name[:2]).exercise:
                wrong.append(f"{source} opens {target}")
    assert not wrong, "notebook badges that open another rung's exercise (run `make exercises`):\n" + "\n".join(wrong)


def test_the_colab_url_pattern_finds_the_generated_badges():
    # Without this, a change to the badge's form could make the badge tests above pass on zero badges.
    for r in course.RUNGS:
        assert COLAB_URL.findall(r.colab_badge) == [(course.REPOSITORY, course.BRANCH, r.exercise)]


def test_relative_links_resolve():
    broken = []
    for path in markdown_files():
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # code blocks hold no links
        for target in MD_LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue  # web addresses, mailto:, anchors within the page
            resolved = (path.parent / target.split("#", 1)[0]).resolve()
            if not resolved.exists():
                broken.append(f"{path.relative_to(REPO_ROOT).as_posix()}: {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


# -- doctor ----------------------------------------------------------------------------------------------
FAKE_REQUIREMENTS = """\
# a comment line
torch==2.13.0   # CPU build
transformers==5.23.0

--extra-index-url https://example.org/simple
accelerate[testing]==1.15.0
huggingface_hub == 2.4.0
numpy>=2.0
"""


def test_doctor_parses_pins():
    assert doctor.parse_requirements(FAKE_REQUIREMENTS) == {
        "torch": "2.13.0", "transformers": "5.23.0", "accelerate": "1.15.0", "huggingface_hub": "2.4.0"}


@pytest.mark.parametrize("name, pinned, installed, cuda, status", [
    ("transformers", "5.23.0", "5.23.0", False, "OK"),
    ("transformers", "5.23.0", "5.22.0", False, "FAIL"),
    ("transformers", "5.23.0", None, False, "FAIL"),
    ("torch", "2.13.0", "2.13.0+cpu", False, "OK"),
    ("torch", "2.13.0", "2.13.0+cu126", True, "OK"),
    ("torch", "2.13.0", "2.9.0+cu126", True, "WARN"),   # Colab keeps its own CUDA torch
    ("torch", "2.13.0", "2.9.0", False, "FAIL"),
    ("numpy", "2.4.6", "2.4.6+local", False, "FAIL"),   # only torch's build tag is forgiven
])
def test_doctor_version_verdicts(name, pinned, installed, cuda, status):
    line = doctor.package_line(name, pinned, installed, cuda)
    assert line.status == status
    assert (" -> fix: " in str(line)) == (status == "FAIL")


def test_doctor_reads_the_real_requirements():
    pins = doctor.parse_requirements((REPO_ROOT / "requirements.txt").read_text(encoding="utf-8"))
    assert {"torch", "transformers", "trl", "peft"} <= set(pins)


def test_doctor_on_colab_leaves_colabs_own_packages_to_colab(monkeypatch):
    monkeypatch.setattr(doctor, "installed_version", lambda name: "0.0.1")  # nothing matches its pin
    kept = {name: line for name, line in zip(doctor.parse_requirements(doctor.REQUIREMENTS.read_text()),
                                             doctor.check_packages(cuda=True, colab=True))}
    assert {name for name, line in kept.items() if line.status == doctor.INFO} == set(colab.COLAB_KEEPS)
    assert "Colab's own, kept" in str(kept["jupyterlab"])
    assert kept["transformers"].status == doctor.FAIL  # the course's own pins still count on Colab
    assert all(line.status == doctor.FAIL for line in doctor.check_packages(cuda=False, colab=False))


def test_doctor_names_a_swapped_model(monkeypatch, tmp_path):
    monkeypatch.delenv("FT_PROFILE", raising=False)
    monkeypatch.delenv("FT_BASE_MODEL", raising=False)
    monkeypatch.setenv("FT_QLORA_MODEL", str(tmp_path))
    line = doctor.check_profile(cuda=False)
    assert line.status == doctor.OK
    assert str(line).endswith(f"profile: tiny (default), FT_QLORA_MODEL={tmp_path}")


def make(*args: str):
    import subprocess

    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("rung", ["02", "02-sft", "rungs/02-sft", "rungs/02-sft/"])
def test_make_check_takes_a_rung_by_number_or_by_folder(rung):
    result = make("-n", "check", f"RUNG={rung}")  # -n: what make would run, without running or installing
    assert result.returncode == 0, result.stderr
    assert "rungs/02-sft/check.py" in result.stdout


def test_make_check_on_a_rung_not_written_says_which_exist():
    result = make("check-args", "RUNG=13")  # check's first step, which installs nothing
    assert result.returncode != 0
    assert "there is no rung 13 yet; the rungs are: 01-when-to-fine-tune 02-sft" in result.stderr
    assert "RUNG=02 checks 02-sft" in result.stderr
