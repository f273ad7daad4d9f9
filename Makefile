# Everything runs from a project-local virtualenv, created on first use.
#   make up     run the whole pipeline on this machine (strata up)
#   make test   the full test suite, real servers included
#   make lint   ruff check, ruff format --check, mypy --strict

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LINT_PATHS := strata intake stores query heartbeat tests bench

.PHONY: up test lint venv install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

venv: $(BIN)/python

install: venv
	$(BIN)/python -m pip install --quiet -e .

install-test: venv
	$(BIN)/python -m pip install --quiet -e ".[test]"

up: install
	$(BIN)/strata up

test: install-test
	$(BIN)/pytest -q

lint: install-test
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy --strict $(LINT_PATHS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Benchmarks (docs/benchmarks.md). Modules are found by glob, so new bench/bench_*.py run too.
#   make bench       every bench/bench_*.py in quick mode (--quick if the module has it, else
#                    its defaults; bench_query's default is its small data set), then a short
#                    load-driver run against a strata up it starts and stops (< 10 min)
#   make bench-full  the long versions (--full where a module has it) and longer load runs
BENCH_MODULES = $(sort $(basename $(notdir $(wildcard bench/bench_*.py))))

.PHONY: bench bench-full

bench: install-test
	@set -e; for m in $(BENCH_MODULES); do \
	  flag=""; if $(BIN)/python -m bench.$$m --help | grep -q -- '--quick'; then flag=--quick; fi; \
	  echo "== python -m bench.$$m $$flag"; $(BIN)/python -m bench.$$m $$flag; done
	@echo "== python -m bench.load_driver --up --duration 20 --points-per-series 10"
	$(BIN)/python -m bench.load_driver --up --duration 20 --points-per-series 10

bench-full: install-test
	@set -e; for m in $(BENCH_MODULES); do \
	  flag=""; if $(BIN)/python -m bench.$$m --help | grep -q -- '--full'; then flag=--full; fi; \
	  echo "== python -m bench.$$m $$flag"; $(BIN)/python -m bench.$$m $$flag; done
	@echo "== python -m bench.load_driver --up --duration 60 (agent shape, then 10 points/series)"
	$(BIN)/python -m bench.load_driver --up --duration 60
	$(BIN)/python -m bench.load_driver --up --duration 60 --points-per-series 10
