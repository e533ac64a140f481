# headrace: the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv/ (Python >= 3.11) and bring up the local stack as needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NATIVE := $(VENV)/.native

.PHONY: help setup demo test lint unit integration soak oracle chaos stack-up stack-down clean

help:
	@echo "make demo        bring the local stack up and run the shop demo end to end, verified"
	@echo "make test        lint, type-check, and run unit + integration tests (stack included)"
	@echo "make setup       create .venv/ and install headrace with its dev tools"
	@echo "make lint        ruff (lint + format check) and mypy"
	@echo "make unit        unit tests only (nothing needs to run)"
	@echo "make integration integration tests against the local stack"
	@echo "make soak        only the soak-size tests (marker soak: the largest data, minutes each)"
	@echo "make oracle N=500  the differential oracle: N generated cases per suite (SEED=S to start elsewhere)"
	@echo "make chaos       the shop pipeline under injected faults (SCENARIO=long: an hour; RECORD=1 writes docs/chaos.md)"
	@echo "make stack-up / stack-down   start or stop the local stack"

setup: $(STAMP) $(NATIVE)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "setup: '$(PYTHON)' not found; install Python 3.11+ (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup: headrace needs Python >= 3.11, '$(PYTHON)' is $$($(PYTHON) -V 2>&1); run make PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "setup: '$(PYTHON)' lacks venv/ensurepip; fix: apt-get install -y python3-venv"; exit 1; }
	@pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "setup: installing libmariadb-dev (mysqlclient, the C MySQL driver, builds against it)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libmariadb-dev pkg-config >/dev/null; \
	  else \
	    echo "setup: mysqlclient needs the MariaDB client library; fix: sudo apt-get install -y libmariadb-dev pkg-config"; exit 1; \
	  fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# the optional native reader of the S3 JSONL source (Rust, pyo3): without cargo headrace runs
# its pure-Python path, the same records at a lower rate (docs/operations.md: "Native reader")
$(NATIVE): $(STAMP) producers/native/Cargo.toml producers/native/Cargo.lock producers/native/pyproject.toml producers/native/src/lib.rs producers/native/_headrace_native.pyi
	@if command -v cargo >/dev/null 2>&1; then \
	  echo "setup: building the native reader (producers/native/, Rust; cached in its target/)"; \
	  $(BIN)/python -m pip install --quiet ./producers/native || exit 1; \
	else \
	  echo "setup: cargo not found: the S3 JSONL source uses its pure-Python reader (slower); install Rust (https://rustup.rs) and re-run make setup to build it"; \
	fi
	@touch $(NATIVE)

demo: setup
	$(BIN)/headrace demo --verify

stack-up: setup
	$(BIN)/headrace stack up

stack-down: setup
	$(BIN)/headrace stack down

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit -q

integration: stack-up
	$(BIN)/pytest tests/integration -q

# the tests marked soak (pytest -m soak): the ones whose data size makes them slow (hundreds
# of thousands of records through the sinks, the stream stages across kill -9); make test
# and make integration run them too, so nothing loses coverage in CI (.ci/run)
soak: stack-up
	$(BIN)/pytest tests -m soak -q -p no:cacheprovider

# N generated cases per oracle suite (CI runs the default, a fixed set of seeds)
N    ?= 150
SEED ?= 0
oracle: stack-up
	HEADRACE_ORACLE_CASES=$(N) HEADRACE_ORACLE_SEED=$(SEED) $(BIN)/pytest tests/oracle -q -s -p no:cacheprovider

# the fault-injection suite (docs/chaos.md): SCENARIO=ci is the few minutes `make test` runs
# too (tests/chaos); SCENARIO=long runs rounds for an hour; RECORD=1 writes its tables into
# docs/chaos.md
SCENARIO ?= ci
chaos: stack-up
	$(BIN)/headrace chaos --scenario $(SCENARIO) $(if $(RECORD),--record)

# --durations: the slowest tests in CI's output, to see where a slow run spent its time
test: lint stack-up
	$(BIN)/pytest tests -q -p no:cacheprovider --durations=25

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
