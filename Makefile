# Everything a developer or CI needs; `make demo` and `make test` set up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# Installed before the project so that pip keeps it: the build pip resolves for this platform
# (CUDA from PyPI on Linux x86-64; see the README for a CPU-only install).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/sdbot db upgrade
	$(BIN)/sdbot imagine "a red circle on a blue background" --seed 1

# Tests run in TEST_WORKERS processes (pytest-xdist), a file each at a time (--dist loadfile: a
# file's module-scoped worker or bot is made once), the slowest files first (tests/conftest.py's
# SLOW_FIRST, kept by --no-loadscope-reorder); much of a test is waiting on a worker process, the
# fake Discord or a socket, so two processes are worth it on CI's 2-core machine.
# TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= 2

test: setup
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/sdbot discord check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
