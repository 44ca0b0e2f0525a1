# The course's commands. `make demo` and `make test` are the README's two commands; both set up
# the virtual environment (.venv) from pyproject.toml first, when it is missing or older.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Offline stand-in data unless told otherwise (make demo MNISTLAB_DATA_SOURCE=auto for the real data).
export MNISTLAB_DATA_SOURCE ?= offline
# Debian packages, in one place (.ci/run and every target below use these lists):
#   fonts-*    the pinned fonts the offline EMNIST-style letters are rendered from (mnistlab/letter_fonts.py)
#   chromium   the real-browser test of the student's JupyterLab (tests/test_browser.py)
#   postgresql the PostgreSQL server tests/test_postgres.py starts (a gradebook shared by two coordinators)
LETTER_FONTS := fonts-urw-base35 fonts-crosextra-caladea fonts-crosextra-carlito fonts-comic-neue \
	fonts-humor-sans fonts-breip fonts-dancingscript
SYSTEM_PACKAGES := $(LETTER_FONTS) chromium postgresql
#   dataset-fashion-mnist  the offline Fashion-MNIST; only the benchmarks use it
BENCH_PACKAGES := dataset-fashion-mnist
# pip on some machines warns about every package it looks up in an empty local index: hide that noise.
PIP_NOISE := is ignored: it is neither a file nor a directory

.PHONY: venv system demo test build release bench clean
venv: $(VENV)/installed

# Installs the Debian packages that are missing (as root, with apt-get), or stops at once with the
# exact command to run. `make test SYSTEM_PACKAGES=` skips the check (then what needs a missing
# package stops or skips, saying which package).
system:
	@bash .ci/system-packages $(SYSTEM_PACKAGES)

$(VENV)/installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	set -o pipefail; $(PY) -m pip install -q --upgrade pip 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	set -o pipefail; $(PY) -m pip install -q -e . 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PY) -c "import torchvision; torchvision.transforms.RandomRotation(3); print('venv ready: torch', __import__('torch').__version__, 'torchvision', torchvision.__version__)"
	touch $@

demo: system venv
	$(PY) -m grader demo

# The test suite, then every reference solution executed by nbval.
test: system venv
	MNISTLAB_QUIET=1 MPLBACKEND=Agg $(PY) -m pytest tests solutions --nbval-lax --nbval-cell-timeout=600 -p no:cacheprovider

build: venv
	$(PY) -m grader build

# What students receive: dist/mnistlab-student/ and its zip (no solutions, no hidden tests).
release: venv
	$(PY) -m grader release

bench: system venv
	@bash .ci/system-packages $(BENCH_PACKAGES)
	$(PY) bench/bench_train.py
	$(PY) bench/bench_augment.py
	$(PY) bench/bench_grader.py

clean:
	rm -rf $(VENV) .pytest_cache dist
