# Two commands do all the set-up on a fresh machine:
#   make run   -> creates .venv if missing, installs the project, runs the default pipeline
#   make test  -> the same venv with the test extras (dev tools, ray), then the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint install clean-data fashion-mnist team-up team-down

# `make run` installs the project alone (the fastest first run); `make test` adds the extras
# (ray: its tests run here and in CI). An editable install, so either stamp serves the code.
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,ray,team]"
	touch $(TEST_STAMP)

# NegLabel's vocabulary (embed.negative_labels.wordnet_dir): Debian's wordnet-base, installed
# where it is missing (root, or passwordless sudo); otherwise install it, or point the parameter
# at a folder holding WordNet 3.0's data.noun and data.adj.
WORDNET ?= /usr/share/wordnet/data.noun
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

$(WORDNET):
	@echo "installing Debian's wordnet-base (NegLabel's vocabulary)"
	@($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wordnet-base >/dev/null) \
		|| (echo "could not install wordnet-base: run 'apt-get install wordnet-base', or set embed.negative_labels.wordnet_dir" >&2; exit 1)

# `dvc plots show` offline: DVC's page template with Vega inlined, named in .dvc/config.local
# (both git-ignored; croft_pipeline.tools.plots_page, docs/dvc.md)
PLOTS_PAGE := .dvc/plots/offline.html

$(PLOTS_PAGE): $(RUN_STAMP)
	$(BIN)/python -m croft_pipeline.tools.plots_page

install: $(TEST_STAMP) $(PLOTS_PAGE)

run: $(RUN_STAMP) $(WORDNET) $(PLOTS_PAGE)
	$(BIN)/kedro run

# Two pytest workers, each test file whole in one of them (its module fixtures are built once):
# the tests run torch on one thread and wait on subprocesses, so two cores serve two workers.
TEST_WORKERS ?= 2

test: $(TEST_STAMP) $(WORDNET)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Fashion-MNIST as a two-domain folder dataset for `kedro run --env=fashion_mnist`
# (docs/fashion_mnist.md): Debian's package when its files are missing, then the export.
FASHION_MNIST_SOURCE := /usr/share/datasets/fashion-mnist
FASHION_MNIST_PER_CLASS ?= 200
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

fashion-mnist: $(RUN_STAMP)
	@if [ ! -f $(FASHION_MNIST_SOURCE)/t10k-images-idx3-ubyte.gz ] \
	    || [ ! -f $(FASHION_MNIST_SOURCE)/t10k-labels-idx1-ubyte.gz ]; then \
	    echo "installing Debian's dataset-fashion-mnist"; \
	    $(SUDO) apt-get update && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist; \
	fi
	$(BIN)/python -m croft_pipeline.data.fashion_mnist --out data/01_raw/fashion_mnist \
	    --source $(FASHION_MNIST_SOURCE) --per-class $(FASHION_MNIST_PER_CLASS)

# The team's MLflow server on this machine (docs/team.md): PostgreSQL (Debian's
# package, installed where it is missing) and `mlflow server` with basic-auth on 127.0.0.1; the
# data stays under $(TEAM_STATE) after team-down, which stops exactly what team-up started.
TEAM_STATE ?= .team
TEAM_STAMP := $(VENV)/.installed-team

$(TEAM_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[team]"
	touch $(TEAM_STAMP)

team-up: $(TEAM_STAMP)
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null)
	$(BIN)/python -m croft_pipeline.tools.team up --state $(TEAM_STATE)

team-down: $(TEAM_STAMP)
	$(BIN)/python -m croft_pipeline.tools.team down --state $(TEAM_STATE)

clean-data:
	find data -type f ! -name .gitkeep -delete

# Kedro-Viz (docs/kedro_viz.md): `make viz` serves it in the foreground and opens the page with
# one pipeline selected (VIZ_PIPELINE; __default__ chains all five at 12-15 % zoom); Ctrl-C,
# `make viz-stop` or SIGTERM to the PID it prints stop every process it started (`kedro viz run`
# stopped by its PID leaves its server process on the port).
VIZ_PIPELINE ?= train
VIZ_PORT ?= 4141

.PHONY: viz viz-stop

viz: $(RUN_STAMP)
	$(BIN)/python -m croft_pipeline.tools.viz run --pipeline=$(VIZ_PIPELINE) --port=$(VIZ_PORT)

viz-stop:
	$(BIN)/python -m croft_pipeline.tools.viz stop
