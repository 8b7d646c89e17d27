# Every target that needs the course's packages depends on the $(STAMP) file, so a fresh clone needs no
# separate install step: the first `make lab` or `make test` creates .venv and installs the pinned versions.

PY ?= python3
VENV = .venv
STAMP = $(VENV)/.installed
RUNG ?=
NOTEBOOK ?=
JSON ?=
SEEDS ?=
FRAMEWORK ?=
SUBMISSIONS ?=
OUT ?=
HIDDEN ?=
JOBS ?=
TIMEOUT ?=
MEMORY_GB ?=
DEST ?=

# The one place the test command is written (.ci/run calls `make test`).
TEST_CMD = HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest tests solutions --nbval-lax -q

# RUNG=02, RUNG=02-sft, RUNG=sft and RUNG=rungs/02-sft/ all mean rung 02 (the folder's name is what a learner
# sees); RUNG=capstone is rungs/12-capstone.
RUNG_NUMBER = $(firstword $(subst -, ,$(notdir $(patsubst %/,%,$(RUNG)))))
# rungs/02-sft for RUNG=02 or RUNG=sft; empty when RUNG is unset or names no folder.
RUNG_DIR = $(if $(RUNG_NUMBER),$(firstword $(wildcard rungs/$(RUNG_NUMBER)-*) $(wildcard rungs/*-$(RUNG_NUMBER))))
# The number of the rung RUNG names (12 for RUNG=capstone), or RUNG as given when it names none.
RUNG_ID = $(or $(firstword $(subst -, ,$(notdir $(RUNG_DIR)))),$(RUNG_NUMBER))

.PHONY: help lab test check check-args progress grade grade-args grade-review student-release student-release-args \
	exercises data base-model bench bench-qlora doctor readme ecosystem test-ecosystem

help:
	@echo "make lab          set up (first time) and open JupyterLab"
	@echo "make test         set up (first time) and run the tests and solution notebooks"
	@echo "make check RUNG=02 [NOTEBOOK=path] [JSON=results.json]   check a rung's notebook"
	@echo "make progress     which rungs your notebooks pass, from your last checks (nothing is run again)"
	@echo "make doctor       check your set-up and say how to fix what fails"
	@echo "make grade SUBMISSIONS=dir [RUNG=02] [OUT=dir] [HIDDEN=dir] [JOBS=2] [TIMEOUT=600] [MEMORY_GB=8]   grade a class"
	@echo "make grade-review OUT=dir   open the grading report to mark written answers (saved into grades.csv)"
	@echo "make student-release DEST=dir [HIDDEN=dir]   the learners' copy: no solutions, tests or hidden tests"
	@echo "make exercises [RUNG=02]   regenerate exercise notebooks from solutions (maintainers)"
	@echo "make data         regenerate the tiny world data under data/"
	@echo "make base-model   pretrain the tiny base model again"
	@echo "make bench [RUNG=02] [SEEDS=0,1,2]   every ready rung's time and before/after figures; with SEEDS,"
	@echo "                   one rung's figures over training seeds (mean, worst, spread)"
	@echo "make bench-qlora  QLoRA on a 7B model, plain vs the course's recipe (needs a CUDA GPU)"
	@echo "make readme       regenerate the rung table in README.md"
	@echo "make ecosystem [FRAMEWORK=axolotl]   build the fine-tuning frameworks' own environments in .ecosystem/"
	@echo "make test-ecosystem   build them all and fine-tune the tiny base in each (rung 11; minutes, gigabytes)"

# Re-runs when the pins change, so `git pull` followed by any target picks up new versions.
$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -r requirements.txt
	$(VENV)/bin/pip install --no-deps -e .
	touch $@

lab: $(STAMP)
	$(VENV)/bin/python -m shared.lab $(if $(PORT),--port $(PORT))

test: $(STAMP)
	@echo "$(TEST_CMD)"
	@$(TEST_CMD); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests -- that is a failure, not a pass." >&2; fi; \
	exit $$status

# Arguments are checked before the set-up, so a typo fails at once instead of after an install.
check-args:
	@if [ -z "$(RUNG)" ]; then echo "usage: make check RUNG=02 [NOTEBOOK=path]" >&2; exit 2; fi
	@if [ -z "$(RUNG_DIR)" ]; then \
		echo "make check: there is no rung $(RUNG) yet; the rungs are: $(notdir $(wildcard rungs/[0-9]*)) (RUNG=02 checks 02-sft)" >&2; \
		exit 2; fi

check: check-args $(STAMP)
	$(VENV)/bin/python $(RUNG_DIR)/check.py $(NOTEBOOK) $(if $(JSON),--json $(JSON))

progress: $(STAMP)
	@$(VENV)/bin/python -c "import sys; from shared.checking import results; sys.exit(results.main())"

# Instructors (docs/grading.md). Arguments are checked before the set-up, as for `make check`.
grade-args:
	@if [ -z "$(SUBMISSIONS)" ]; then echo "usage: make grade SUBMISSIONS=folder [RUNG=02] [OUT=folder] [HIDDEN=folder] [JOBS=2]   (one subfolder or zip per learner)" >&2; exit 2; fi

grade: grade-args $(STAMP)
	$(VENV)/bin/python -m shared.grading "$(SUBMISSIONS)" $(if $(RUNG),--rung $(RUNG_ID)) $(if $(OUT),--out "$(OUT)") \
		$(if $(HIDDEN),--hidden "$(HIDDEN)") $(if $(JOBS),--jobs $(JOBS)) $(if $(TIMEOUT),--timeout $(TIMEOUT)) \
		$(if $(MEMORY_GB),--memory-gb $(MEMORY_GB))

grade-review: $(STAMP)
	@if [ -z "$(OUT)" ]; then echo "usage: make grade-review OUT=folder   (the folder make grade wrote: SUBMISSIONS-graded)" >&2; exit 2; fi
	$(VENV)/bin/python -m shared.grading.review serve "$(OUT)" $(if $(PORT),--port $(PORT))

# The learners' copy: lessons, exercises, checkers, shared/ and data -- no solutions, tests or hidden tests.
student-release-args:
	@if [ -z "$(DEST)" ]; then echo "usage: make student-release DEST=folder [HIDDEN=folder]   (a new folder outside the course)" >&2; exit 2; fi

student-release: student-release-args $(STAMP)
	$(VENV)/bin/python -m shared.grading.release "$(DEST)" $(if $(HIDDEN),--hidden "$(HIDDEN)")

exercises: $(STAMP)
	$(VENV)/bin/python -m shared.notebooks.cli $(if $(RUNG),--rung $(RUNG_ID))

data: $(STAMP)
	$(VENV)/bin/python -m shared.world.generator

base-model: $(STAMP)
	$(VENV)/bin/python -m shared.base_model.pretrain

bench: $(STAMP)
	$(VENV)/bin/python bench/run.py $(if $(RUNG),--rung $(RUNG_ID)) $(if $(SEEDS),--seeds $(SEEDS))

# Needs a CUDA GPU; `pip install liger-kernel` adds the fused kernels to the course's recipe.
bench-qlora: $(STAMP)
	$(VENV)/bin/python bench/qlora_7b.py

# No $(STAMP) here: doctor must also explain a machine where nothing is installed yet.
doctor:
	@if [ -x $(VENV)/bin/python ]; then $(VENV)/bin/python -m shared.doctor; else $(PY) -m shared.doctor; fi

# shared/course.py needs only the standard library.
readme:
	$(PY) -m shared.course --write-readme

# Axolotl, LLaMA-Factory and torchtune pin their own torch and transformers: each gets an environment of its own
# under .ecosystem/, never the course's .venv (shared/ecosystem/environments.py says what and why).
ecosystem: $(STAMP)
	$(VENV)/bin/python -m shared.ecosystem.environments $(FRAMEWORK)

# Not part of `make test` (its budget): CI runs it after the suite when time allows (.ci/run).
test-ecosystem: ecosystem
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest tests/test_ecosystem.py -m ecosystem -q
