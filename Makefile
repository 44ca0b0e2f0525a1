# The course's commands. `make demo` and `make test` are the README's two commands; both set up
# the virtual environment (.venv) from pyproject.toml first, when it is missing or older.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Offline stand-in data unless told otherwise (make demo MNISTLAB_DATA_SOURCE=auto for the real data).
export MNISTLAB_DATA_SOURCE ?= offline
# pip on some machines warns about every package it looks up in an empty local index: hide that noise.
PIP_NOISE := is ignored: it is neither a file nor a directory

.PHONY: venv demo test build bench clean
venv: $(VENV)/installed

$(VENV)/installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	set -o pipefail; $(PY) -m pip install -q --upgrade pip 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	set -o pipefail; $(PY) -m pip install -q -e . 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PY) -c "import torchvision; torchvision.transforms.RandomRotation(3); print('venv ready: torch', __import__('torch').__version__, 'torchvision', torchvision.__version__)"
	touch $@

demo: venv
	$(PY) -m grader demo

# The test suite, then every reference solution executed by nbval.
test: venv
	MNISTLAB_QUIET=1 MPLBACKEND=Agg $(PY) -m pytest tests solutions --nbval-lax --nbval-cell-timeout=600 -p no:cacheprovider

build: venv
	$(PY) -m grader build

bench: venv
	$(PY) bench/bench_train.py
	$(PY) bench/bench_augment.py
	$(PY) bench/bench_grader.py

clean:
	rm -rf $(VENV) .pytest_cache
