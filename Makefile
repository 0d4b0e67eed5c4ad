# convosd: set-up, run and test. The README's first two commands are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONVOS := node_modules/@xmtp/convos-cli/bin/run.js
# The Node 22 that runs the CLI (and nothing else): the npm registry's node-linux-<arch> package,
# pinned in package.json, picked by `uname -m`. The system's node only runs npm.
UNAME_M := $(shell uname -m)
NODE_ARCH := $(if $(filter x86_64 amd64,$(UNAME_M)),x64,$(if $(filter aarch64 arm64,$(UNAME_M)),arm64,unsupported-$(UNAME_M)))
NODE := node_modules/node-linux-$(NODE_ARCH)/bin/node
# A local run keeps its state under the repo. Its socket goes where convosctl looks by
# default ($XDG_RUNTIME_DIR/convosd/ or /tmp/convosd-$UID/), unless RUN_SOCKET names one.
RUN_STATE ?= $(CURDIR)/.state
RUN_SOCKET ?=

.PHONY: help setup run test test-tools lint typecheck unit clean check-cli

help:
	@echo "make run    set everything up and start convosd in the foreground"
	@echo "make test   set everything up and run ruff, mypy and the whole test suite"

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,mcp,webhook]'
	touch $@

# npm only installs; a fresh Debian 12 has no npm, so its npm package (9.2, on Node 18) is
# installed when npm is missing. That npm only starts the pinned one: npm 9.2 ignores
# `overrides` when it checks the lock file ("Missing: @xmtp/node-bindings@1.8.0 from lock
# file"), npm 9.9.4 does not (and still runs on Node 18).
NPM_VERSION := 9.9.4
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: installing Debian's npm package"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends npm; }
	npm exec --yes --package=npm@$(NPM_VERSION) -- npm ci --no-audit --no-fund --loglevel=error
	@test -x $(NODE) || { echo "npm ci installed no Node 22 at $(NODE): machine '$(UNAME_M)'" \
	  "is not supported (x86_64 and aarch64 are)" >&2; exit 1; }
	touch $@

# The repository's patches of the installed CLI (patches/, scripts/patch_cli.py): each tied to
# one exact CLI version and to its files' SHA-256 before and after; any other version or file
# fails here, loudly. Then the CLI probe (README, How convosd runs the CLI) on the pinned
# Node: `convos identity list --json` must exit 0.
setup: $(VENV)/.installed node_modules/.installed
	$(PYTHON) scripts/patch_cli.py
	@probe_home=$$(mktemp -d) && trap 'rm -rf "$$probe_home"' EXIT && \
	  echo "node: $$($(NODE) --version) ($(NODE))" && \
	  if HOME="$$probe_home" CONVOS_HOME="$$probe_home/convos" CONVOS_SKIP_NEW_VERSION_CHECK=true \
	     $(NODE) $(CONVOS) identity list --json >/dev/null; then \
	    echo "convos CLI: $$(CONVOS_SKIP_NEW_VERSION_CHECK=true $(NODE) $(CONVOS) --version) works" \
	      "(bindings $$($(NODE) -p 'require("./node_modules/@xmtp/node-bindings/package.json").version'))"; \
	  else echo "convos CLI probe failed: 'convos identity list --json' did not exit 0 on $(NODE)" >&2; exit 1; fi

run: setup
	CONVOSD_CLI="$(CURDIR)/$(NODE) $(CURDIR)/$(CONVOS)" $(VENV)/bin/convosd \
	  --state-dir $(RUN_STATE) $(if $(RUN_SOCKET),--socket $(RUN_SOCKET)) $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# The unit-file checks need systemd-analyze (Debian's systemd package); the real-node tier
# (tests/realnode: the real CLI against tests/xmtpnode in a private network namespace) needs
# unshare/nsenter (util-linux) and ip (iproute2). Only the tests do. Without a namespace the
# tier is skipped and pytest's summary says why.
test-tools:
	@command -v systemd-analyze >/dev/null || (apt-get update -qq && apt-get install -y -qq systemd)
	@command -v ip >/dev/null || (apt-get update -qq && apt-get install -y -qq iproute2)

# The daemon's tests run on both CLI transports (tests/conftest.py reads
# CONVOSD_TEST_CLI_TRANSPORT): the whole suite on the warm one, the default, then the daemon,
# RPC, adapter and idempotency files again with one process per command (about a minute).
# Both passes always run (a failure on warm must not hide one on one-shot); the target fails
# if either failed. CONVOSD_TEST_PATIENCE=N gives a slower machine N times the tests' limits.
ONESHOT_TESTS := tests/test_rpc_methods.py tests/test_instance.py tests/test_adapter.py \
  tests/test_idempotency.py tests/test_cli_queue.py
unit: setup test-tools
	@failed=""; \
	echo "$(VENV)/bin/pytest $(PYTEST_ARGS)"; \
	$(VENV)/bin/pytest $(PYTEST_ARGS) || failed="$$failed warm"; \
	echo "CONVOSD_TEST_CLI_TRANSPORT=oneshot $(VENV)/bin/pytest $(ONESHOT_TESTS)"; \
	CONVOSD_TEST_CLI_TRANSPORT=oneshot $(VENV)/bin/pytest $(ONESHOT_TESTS) || failed="$$failed one-shot"; \
	if [ -n "$$failed" ]; then echo "make unit: failed on:$$failed" >&2; exit 1; fi

test: setup lint typecheck unit

# Another CLI version before pinning it (README, Upgrading the CLI): installs it in a scratch
# copy, names every command, argument and flag that changed, says whether the CLI patch
# applies, and runs the real-CLI and real-node tiers on it, naming each failed test.
check-cli: setup test-tools
	@test -n "$(VERSION)" || { echo "usage: make check-cli VERSION=0.10.22" >&2; exit 2; }
	$(PY) scripts/check_cli.py $(VERSION)

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
