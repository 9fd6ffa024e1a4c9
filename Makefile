# Quick start: `make demo` (run the main job on the embedded SQLite default), `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv system demo test lint bench stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

venv: $(STAMP) system

system:
	@deployments/system-packages.sh

demo: venv
	$(BIN)/circus up
	$(BIN)/circus demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/deptry .

# two processes, a test file each at a time: the files that run a Prefect server and workers
# mostly wait, so they overlap with the rest
test: venv lint
	$(BIN)/pytest -n 2 --dist loadfile

# every benchmark, then one table of its goals (about half an hour; not part of `make test`)
bench: venv
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

stop:
	@if [ -x $(BIN)/circus ]; then $(BIN)/circus down; fi

clean: stop
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
