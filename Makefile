# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE := examples/harness-block-example

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

# Re-installs only when the packaging files change, so `setup` is idempotent and cheap. The example
# plugin package is installed after the project, as a user installs any plugin; its tests need it.
$(STAMP): pyproject.toml constraints.txt $(EXAMPLE)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip uninstall -qq -y harness  # the distribution's old name (now segharness), if there
	rm -rf harness.egg-info  # its metadata in the tree: on sys.path it would still announce a second `harness` script
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,ray,log,export,tune]"
	$(BIN)/python -m pip install -q -c constraints.txt -e $(EXAMPLE)
	touch $(STAMP)

demo: setup
	$(BIN)/harness run --arch unet --loss ce --balancer none --epochs 5
	$(BIN)/harness leaderboard

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# The speed benchmark (naive loop vs the harness, side by side): e.g. make bench BENCH_ARGS="--arch unet".
BENCH_ARGS ?=
bench: setup
	$(BIN)/harness bench $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs
