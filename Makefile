# The two commands of the README, and the benchmarks.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The suite runs twice: on today's clock, then with the whole machine's clock a month ahead
# (libfaketime), so a test bound to today's date fails today rather than next week.
CLOCK_AHEAD ?= +31d

.PHONY: run test lint bench clean faketime

$(BIN)/socialdesk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(BIN)/socialdesk
	$(BIN)/socialdesk demo

faketime:
	@command -v faketime >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -qq faketime >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null && apt-get install -y -qq faketime >/dev/null; }; }; } || \
	  { echo "the date-shift pass needs libfaketime: apt-get install faketime" >&2; exit 1; }

lint: $(BIN)/socialdesk
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: $(BIN)/socialdesk faketime lint
	$(BIN)/python -m pytest
	faketime -f '$(CLOCK_AHEAD)' $(BIN)/python -m pytest

bench: $(BIN)/socialdesk
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data reports
