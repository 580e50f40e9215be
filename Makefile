# Two commands matter: `make run` and `make test`. Both bootstrap .venv themselves.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
CONFIG  ?= config.example.yaml
# `make run PORT=8081 OPS_LISTEN=127.0.0.1:9092 CONFIG=my.yaml`; unset = what the config says
PORT       ?=
OPS_LISTEN ?=
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test lint install install-test system-deps bench clean

run: $(STAMP_RUN)
	$(BIN)/relay serve -c $(CONFIG)$(if $(PORT), --port $(PORT))$(if $(OPS_LISTEN), --ops-listen $(OPS_LISTEN))

test: $(STAMP_TEST) system-deps lint
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# The example channel-type plugin too: tests/test_plugins.py drives Relay through it.
$(STAMP_TEST): pyproject.toml setup.py examples/relay-echo/pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q -e examples/relay-echo
	touch $@ $(STAMP_RUN)

# The unit layer alone (tests/unit: pure code, injected clocks and RNGs; seconds).
unit: $(STAMP_TEST)
	$(BIN)/python -m pytest -q tests/unit

# ruff (lint + import order) and mypy (strict on adaptors/ and config/). mypy reads the
# installed module names, so it looks at the tree through a folder of links named that way.
lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	@mkdir -p .typecheck && ln -sfn ../relay .typecheck/relay && ln -sfn ../adaptors .typecheck/relay_adaptors && ln -sfn ../config .typecheck/relay_config
	MYPYPATH=.typecheck $(BIN)/mypy -p relay -p relay_adaptors -p relay_config
	MYPYPATH=.typecheck $(BIN)/mypy --strict examples/relay-echo/relay_echo

# System packages the suite runs for real (see tests/README in README.md).
system-deps:
	@bash scripts/system-deps.sh

bench: $(STAMP_TEST)
	@bash scripts/system-deps.sh bench
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .pytest_cache
