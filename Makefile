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
