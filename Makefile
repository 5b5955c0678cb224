# optical_viz: `make setup` once, then `make demo` (the main job) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Data root: ../shared/data when it sits beside the repository, else data/ (see data/README.md).
OPTICAL_VIZ_DATA ?= $(if $(wildcard ../shared/data/README.md),$(abspath ../shared/data),$(abspath data))
export OPTICAL_VIZ_DATA

.PHONY: setup model test test-fast demo lab reproduce bench clean-venv

$(PY):
	python3 -m venv $(VENV)

# idempotent: a second run only checks that everything is already there
setup: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(BIN)/optical-viz model build

model: $(PY)
	$(BIN)/optical-viz model build

test: $(PY)
	$(PY) -m pytest -q

# the edit-test loop: everything not marked slow (under 3 minutes on 2 cores); `make test` stays the full suite
test-fast: $(PY)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow"

demo: setup
	$(BIN)/optical-viz demo

# --allow-root only when run as root (containers, this project's machines)
lab: $(PY)
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

# RQ1 and RQ2 as two single-threaded processes (faster than one on 2 cores), then one pass that
# finds every run done and writes the summaries, tables and figures over both
reproduce: $(PY)
	mkdir -p runs; OMP_NUM_THREADS=1 $(BIN)/optical-viz reproduce --scale full --question rq1 --quiet > runs/reproduce-rq1.log 2>&1 & \
	rq1=$$!; OMP_NUM_THREADS=1 $(BIN)/optical-viz reproduce --scale full --question rq2 --quiet; rq2=$$?; \
	wait $$rq1 || { echo "rq1 failed, see runs/reproduce-rq1.log"; exit 1; }; [ $$rq2 = 0 ]
	$(BIN)/optical-viz reproduce --scale full

bench: $(PY)
	$(BIN)/optical-viz bench transport --json benchmarks/transport.json
	$(BIN)/optical-viz bench distill --json benchmarks/distill.json
	$(BIN)/optical-viz bench encode --json benchmarks/encode.json

clean-venv:
	rm -rf $(VENV)
