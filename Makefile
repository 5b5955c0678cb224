# optical_viz: `make demo` (the main job) and `make test` each do the set-up they need
# (`make setup`: venv, packages, fonts, the default model); a second run only checks it is done.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Data root: ../shared/data when it sits beside the repository, else data/ (see data/README.md).
OPTICAL_VIZ_DATA ?= $(if $(wildcard ../shared/data/README.md),$(abspath ../shared/data),$(abspath data))
export OPTICAL_VIZ_DATA

# Debian packages with the fonts that figures need for non-Latin scripts (optical_viz.plots.SCRIPT_FONTS)
FONT_PACKAGES := fonts-noto-core fonts-noto-cjk
# the packages are installed once per venv; again when pyproject.toml changes
INSTALLED := $(VENV)/.installed

.PHONY: setup packages fonts model test test-fast demo lab reproduce reproduce-rq3 bench clean-venv

$(PY):
	python3 -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

packages: $(INSTALLED)

# idempotent: a second run only checks that everything is already there (a few seconds)
setup: packages fonts model

# Noto fonts for Hindi, Chinese, Arabic, Amharic, Thai... labels: installed with apt-get when
# run as root on Debian/Ubuntu; otherwise a message says how (figures then show empty boxes)
fonts: $(INSTALLED)
	@if $(PY) -c 'import sys; from optical_viz.plots import missing_script_fonts as m; sys.exit(bool(m()))' 2>/dev/null; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $(FONT_PACKAGES) (fonts for non-Latin scripts in figures)"; \
	  { apt-get install -y -qq $(FONT_PACKAGES) || { apt-get update -qq && apt-get install -y -qq $(FONT_PACKAGES); }; } >/dev/null \
	    && rm -f "$$($(PY) -c 'import matplotlib; print(matplotlib.get_cachedir())')"/fontlist-*.json; \
	else \
	  echo "note: figures need Noto fonts for non-Latin scripts; missing: $$($(PY) -c 'from optical_viz.plots import missing_script_fonts as m; print(", ".join(m()))')."; \
	  echo "      install them with: sudo apt-get install $(FONT_PACKAGES) (Debian/Ubuntu), or from https://notofonts.github.io;"; \
	  echo "      until then those labels are drawn as empty boxes (and tests/test_plots.py fails)"; \
	fi

model: $(INSTALLED)
	$(BIN)/optical-viz model build

# the whole suite as two single-threaded pytest-xdist workers, one per core (each test goes to
# whichever worker is free: --dist worksteal); PYTEST_ARGS="..." adds options (-k, -x, a file).
# PYTHONDONTWRITEBYTECODE= : pytest caches its rewritten test modules even where the environment
# forbids bytecode files (otherwise every worker re-parses every test file, ~10 s of test-fast)
PYTEST := PYTHONDONTWRITEBYTECODE= OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist worksteal
test: setup
	$(PYTEST) $(PYTEST_ARGS)

# the edit-test loop: everything not marked slow, on the same two workers; `make test` stays the full suite
test-fast: $(PY)
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

demo: setup
	$(BIN)/optical-viz demo

# --allow-root only when run as root (containers, this project's machines)
lab: setup
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

# The pre-registered protocol (results/full/protocol.yaml), stage by stage, each stage as two
# single-threaded processes (faster than one on 2 cores): tuning on dev, then the test set.
# Finished runs and evaluations are skipped, so an interrupted `make reproduce` resumes.
STAGES := rq1-dev rq1-dev2 rq2-dev rq1-test rq2-test
reproduce: setup
	mkdir -p runs
	for stage in $(STAGES); do \
	  OMP_NUM_THREADS=1 $(BIN)/optical-viz reproduce --scale full --stage $$stage --shard 1/2 --quiet > runs/reproduce-$$stage-1.log 2>&1 & pid=$$!; \
	  OMP_NUM_THREADS=1 $(BIN)/optical-viz reproduce --scale full --stage $$stage --shard 0/2 --quiet || exit 1; \
	  wait $$pid || { echo "stage $$stage, shard 1/2 failed: see runs/reproduce-$$stage-1.log"; exit 1; }; \
	done
	$(BIN)/optical-viz reproduce --scale full --stage rq2-test --quiet   # finds every run done; rebuilds the reports

# RQ3 (results/optical/protocol.yaml), the same way: each stage as two single-threaded
# processes, resumable; a stage whose prerequisites are not done says so and stops.
RQ3_STAGES := rq3-dev rq3-test rq3-scale
reproduce-rq3: setup
	mkdir -p runs
	for stage in $(RQ3_STAGES); do \
	  OMP_NUM_THREADS=1 $(BIN)/optical-viz reproduce --protocol optical --scale full --stage $$stage --shard 1/2 --quiet > runs/rq3-$$stage-1.log 2>&1 & pid=$$!; \
	  OMP_NUM_THREADS=1 $(BIN)/optical-viz reproduce --protocol optical --scale full --stage $$stage --shard 0/2 --quiet || exit 1; \
	  wait $$pid || { echo "stage $$stage, shard 1/2 failed: see runs/rq3-$$stage-1.log"; exit 1; }; \
	done

bench: setup
	$(BIN)/optical-viz bench transport --json benchmarks/transport.json
	$(BIN)/optical-viz bench distill --json benchmarks/distill.json
	$(BIN)/optical-viz bench encode --json benchmarks/encode.json

clean-venv:
	rm -rf $(VENV)
