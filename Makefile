# Thin, documented targets. Each sets up .venv on first use (pinned by requirements.lock).
# `make help` lists them.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export MPLBACKEND := Agg

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-extended test-all data release solutions check grade lint lock clean browser site bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv with the pinned dependencies (idempotent)

data: $(STAMP)  ## stage MNIST into data/MNIST/raw (download, or FROM=DIR for a local mirror)
	$(BIN)/course data fetch mnist $(if $(FROM),--from $(FROM))

demo: $(STAMP)  ## end-to-end demo: release from source, grade the demo submissions, print grades
	$(BIN)/python -m course.demo

browser:  ## install Debian's chromium and chromium-driver (the browser tests; needs root)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  apt-get install -y -q chromium chromium-driver >/dev/null || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }

test: $(STAMP)  ## run what CI must prove (ARCHITECTURE.md; the README's test command)
	$(BIN)/python -m pytest -q -m "not extended"

# In the order of what matters most per minute when CI's time budget cuts the run short:
# the corpus in the reduced isolation settings (the platforms without namespaces or cgroups),
# the stress tests of "never a false zero", then the mistaken-variant groups, then the rest.
FIRST_EXTENDED := tests/test_corpus.py tests/test_never_false_zero.py tests/test_fair_time.py \
  tests/test_interrupt.py tests/test_grading.py
test-extended: $(STAMP)  ## run the extended suite: every test `make test` leaves out
	$(BIN)/python -m pytest -q -m extended $(FIRST_EXTENDED) \
	  $(filter-out $(FIRST_EXTENDED),$(sort $(wildcard tests/test_*.py)))

test-all: test test-extended  ## run every test of the bundle

release: $(STAMP)  ## regenerate release/ from source/ (nbgrader)
	$(BIN)/course release

solutions: $(STAMP)  ## regenerate and execute solutions/ at full scale
	$(BIN)/course solutions

bench: $(STAMP)  ## measure the bundle against scikit-learn, a bare loop, no sandbox (bench/)
	$(BIN)/course bench

site: $(STAMP)  ## course website in site/ (SOLUTIONS=1: with solutions, in site-solutions/)
	$(BIN)/course site $(if $(SOLUTIONS),--solutions --out site-solutions)

check: $(STAMP)  ## fail if release/ or solutions/ is out of sync with source/
	$(BIN)/course check

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check course autograder tests

lock:  ## re-pin requirements.lock from a fresh install of pyproject.toml
	rm -rf /tmp/course-lock && $(PYTHON) -m venv /tmp/course-lock
	/tmp/course-lock/bin/pip install --quiet '.[dev]'
	/tmp/course-lock/bin/pip freeze --exclude course | sed 's/+cpu$$//' > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:  ## remove caches and grading output (keeps .venv and data)
	rm -rf .pytest_cache .ruff_cache grades demo/out
