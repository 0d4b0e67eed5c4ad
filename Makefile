# convosd: set-up, run and test. The README's first two commands are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONVOS := node_modules/@xmtp/convos-cli/bin/run.js
# A local run keeps its state under the repo. Its socket goes where convosctl looks by
# default ($XDG_RUNTIME_DIR/convosd/ or /tmp/convosd-$UID/), unless RUN_SOCKET names one.
RUN_STATE ?= $(CURDIR)/.state
RUN_SOCKET ?=

.PHONY: help setup run test test-tools lint typecheck unit clean

help:
	@echo "make run    set everything up and start convosd in the foreground"
	@echo "make test   set everything up and run ruff, mypy and the whole test suite"

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,mcp,webhook]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The CLI probe (README, How convosd runs the CLI): `convos identity list --json` must exit 0.
setup: $(VENV)/.installed node_modules/.installed
	@probe_home=$$(mktemp -d) && trap 'rm -rf "$$probe_home"' EXIT && \
	  if HOME="$$probe_home" CONVOS_HOME="$$probe_home/convos" CONVOS_SKIP_NEW_VERSION_CHECK=true \
	     node $(CONVOS) identity list --json >/dev/null; then \
	    echo "convos CLI: $$(CONVOS_SKIP_NEW_VERSION_CHECK=true node $(CONVOS) --version) works"; \
	  else echo "convos CLI probe failed: 'convos identity list --json' did not exit 0" >&2; exit 1; fi

run: setup
	CONVOSD_CLI="node $(CURDIR)/$(CONVOS)" $(VENV)/bin/convosd \
	  --state-dir $(RUN_STATE) $(if $(RUN_SOCKET),--socket $(RUN_SOCKET)) $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# The unit-file checks need systemd-analyze (Debian's systemd package); only the tests do.
test-tools:
	@command -v systemd-analyze >/dev/null || (apt-get update -qq && apt-get install -y -qq systemd)

unit: setup test-tools
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: setup lint typecheck unit

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
