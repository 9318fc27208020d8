# Two commands do all the set-up on a fresh machine:
#   make run   -> creates .venv if missing, installs the project, runs the default pipeline
#   make test  -> the same venv with the test extras (dev tools, ray), then the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint install clean-data

# `make run` installs the project alone (the fastest first run); `make test` adds the extras
# (ray: its tests run here and in CI). An editable install, so either stamp serves the code.
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,ray]"
	touch $(TEST_STAMP)

install: $(TEST_STAMP)

run: $(RUN_STAMP)
	$(BIN)/kedro run

test: $(TEST_STAMP)
	$(BIN)/python -m pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean-data:
	find data -type f ! -name .gitkeep -delete
