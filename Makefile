# capest: two commands on a fresh machine
#   make report   set up .venv from requirements.lock, estimate the February 11 case, write its report
#   make test     set up .venv from requirements-dev.lock, run lint and the default test tier
SHELL := /bin/bash
.DEFAULT_GOAL := report

CASE ?= data/cases/february-11-plant
PYTHON_VERSION := $(shell cat .python-version)
# The interpreter .python-version names: pyenv's if present, else python3.12 on PATH.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/$(PYTHON_VERSION)/bin/python3) $(shell command -v python$(basename $(PYTHON_VERSION)) 2>/dev/null))
VENV := .venv
BIN := $(VENV)/bin
PIP_FLAGS := --require-hashes --no-deps --disable-pip-version-check -q
# uv installs the locks (pip took about twice as long: benchmarks/README.md, "Setting up the
# venvs"); pip installs uv itself, pinned and hash-checked, from requirements-uv.lock.
UV := $(BIN)/uv
UV_FLAGS := --python $(BIN)/python --require-hashes --no-deps --compile-bytecode -q

.PHONY: report test test-slow lint calibrate bench lock clean-venv readme-table

# Stamps: an environment is (re)built only when its lock file changes.
$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "error: Python $(PYTHON_VERSION) not found (pyenv install $(PYTHON_VERSION))" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if "$(PYTHON_VERSION)".startswith(v) else "error: $(PYTHON) is Python " + v + ", .python-version wants $(PYTHON_VERSION)")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.uv: requirements-uv.lock | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) -r requirements-uv.lock
	@touch $@

$(VENV)/.runtime: requirements.lock pyproject.toml | $(VENV)/.uv
	$(UV) pip install $(UV_FLAGS) -r requirements.lock
	$(UV) pip install --python $(BIN)/python --no-deps --no-build-isolation -q -e .
	@touch $@

$(VENV)/.dev: requirements-dev.lock $(VENV)/.runtime | $(VENV)/.uv
	$(UV) pip install $(UV_FLAGS) -r requirements-dev.lock
	@touch $@

report: $(VENV)/.runtime
	$(BIN)/capest estimate $(CASE)

# Debian's headless Chromium, for tests/test_browser.py; installed once per machine.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "error: the browser test needs Debian's chromium package, and apt-get is missing" >&2; exit 1; }
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

test: $(VENV)/.dev $(CHROMIUM) lint
	$(BIN)/python -m pytest -m "not slow" -n 2 -q

# Two workers, a test file each at a time, longest files first (tests/conftest.py orders them by
# their tests' slow(minutes=...); --no-loadscope-reorder keeps that order instead of xdist's
# own, by number of tests). The durations printed are what the minutes are updated from.
test-slow: $(VENV)/.dev
	$(BIN)/python -m pytest -m slow -n 2 --dist loadfile --no-loadscope-reorder -q --durations=40

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Simulation-based calibration and its negative controls (sizes: SIZES["full"] in
# model/calibration.py); figures and calibration.json into reports/calibration/. Exits 1 if
# the calibration fails or a control passes. The simulations run on a local Dask cluster (one
# process per two cores), or on an existing one: make calibrate SCHEDULER=tcp://host:8786
calibrate: $(VENV)/.runtime
	$(BIN)/python -m model.calibration --case $(CASE) --size full --out reports/calibration $(if $(SCHEDULER),--scheduler $(SCHEDULER))

bench: $(VENV)/.runtime
	$(BIN)/python benchmarks/run.py

# Regenerate the lock files (needs network); uv resolves and installs.
lock: $(VENV)/.uv
	$(UV) pip compile requirements-uv.in --python-version 3.12 --generate-hashes -o requirements-uv.lock
	$(UV) pip compile requirements.in --python-version 3.12 --generate-hashes -o requirements.lock
	$(UV) pip compile requirements-dev.in -c requirements.lock --python-version 3.12 --generate-hashes -o requirements-dev.lock

clean-venv:
	rm -rf $(VENV)

# The README's estimate table, from the latest saved run of the case (see README)
readme-table: $(VENV)/.runtime
	@$(BIN)/python -c "import json, sys; from model.report import readme_table; print(readme_table(json.load(open(sys.argv[1]))))" reports/$(notdir $(CASE))/latest/summary.json
