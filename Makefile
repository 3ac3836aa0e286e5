# The two commands of the README, and the benchmarks.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/socialdesk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(BIN)/socialdesk
	$(BIN)/socialdesk demo

test: $(BIN)/socialdesk
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(BIN)/socialdesk
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data reports
