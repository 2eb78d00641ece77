# Two commands for a new user: `make demo` and `make test`. Everything installs into .venv, at
# the versions constraints.txt pins, each checked against its hash: a new release of a
# dependency changes nothing until `make lock` or `make lock-upgrade` is run and committed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := constraints.txt
LOCKED := $(VENV)/.locked
STAMP := $(VENV)/.installed
# What `uv pip compile` resolves besides pyproject.toml's dependencies and dev extra: the
# venv's build tools (its own setuptools is old and has known CVEs), as [build-system] asks.
BUILD_TOOLS := pip\nsetuptools>=77\nwheel\n
LOCK_FLAGS := --extra dev --python-version 3.11 --python-platform linux --generate-hashes \
	--custom-compile-command 'make lock'

.PHONY: demo test lint install lock lock-upgrade clean chromium

# Every pinned package, pip, setuptools and wheel included, as wheels only (nothing is built
# with tools the lock does not pin).
$(LOCKED): $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --only-binary :all: -r $(LOCK)
	touch $@

# The project itself, editable, from what is installed: nothing is fetched, so a dependency
# that pyproject.toml asks for and the lock does not pin fails here, by name.
$(STAMP): $(LOCKED) pyproject.toml
	$(BIN)/python -m pip install --quiet --no-index --no-build-isolation -e '.[dev]' || { \
	  echo "error: pyproject.toml asks for a package or version $(LOCK) does not pin;" \
	    "run 'make lock' and commit $(LOCK)" >&2; exit 1; }
	touch $@

install: $(STAMP)

## Simulate a practice, train and register a model, score new claims with explanations.
demo: $(STAMP)
	$(BIN)/denial-risk demo

## Lint, type-check and run every test (the report's page is opened in a real Chromium).
test: $(STAMP) lint chromium
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Debian's headless Chromium and its ChromeDriver for the report's browser test, from the
## distribution's packages (never a browser download of a test tool's own); skipped when present.
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver >/dev/null; fi

## Re-resolve constraints.txt after pyproject.toml's dependencies change; other pins stay.
lock: $(LOCKED)
	printf '$(BUILD_TOOLS)' | $(BIN)/uv pip compile pyproject.toml - $(LOCK_FLAGS) -o $(LOCK) >/dev/null

## Move every pin to the newest release pyproject.toml allows (then `make test`, and commit).
lock-upgrade: $(LOCKED)
	printf '$(BUILD_TOOLS)' | $(BIN)/uv pip compile pyproject.toml - $(LOCK_FLAGS) --upgrade \
	  -o $(LOCK) >/dev/null

clean:
	rm -rf $(VENV) work mlruns mlflow.db .pytest_cache .mypy_cache .ruff_cache
