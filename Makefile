# Eddy's everyday commands. `make run` and `make test` work on a fresh
# machine: they create .venv and install Eddy into it first.
#
# The install re-runs only when pyproject.toml is newer than the stamp file
# in .venv, so a second `make test` starts at once. The same goes for the
# official Convex clients the end-to-end tests drive (`e2e-deps`): npm
# `convex` into ./node_modules when package.json or its lock changes, and
# PyPI `convex` through the `test` extra.

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
INSTALL_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
BENCH_SECONDS ?= 10
PORT ?= 3210

.PHONY: venv e2e-deps run test test-fast bench bench-live clean-data

venv: $(INSTALL_STAMP)

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

$(INSTALL_STAMP): pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install --quiet -e '.[test]'
	touch $(INSTALL_STAMP)

# npm `convex` pinned in package.json and package-lock.json (tests/e2e/official).
e2e-deps: venv $(NODE_STAMP)

$(NODE_STAMP): package.json $(wildcard package-lock.json)
	if [ -f package-lock.json ]; then npm ci --ignore-scripts --no-audit --no-fund; \
	else npm install --ignore-scripts --no-audit --no-fund; fi
	touch $(NODE_STAMP)

# Serves the example app on http://127.0.0.1:3210 (`make run PORT=3300` for
# another port) with its data in examples/chat/.eddy (the default data folder).
run: venv
	$(VENV)/bin/eddy dev examples/chat --port $(PORT)

test: venv e2e-deps
	$(VENV_PYTHON) -m pytest -q

test-fast: venv
	$(VENV_PYTHON) -m pytest -q -m "not slow"

# Each benchmark runs its baseline and Eddy in the same invocation and prints
# them side by side; docs/performance.md records the figures.
bench: venv
	$(VENV_PYTHON) bench/bench_mutations.py --seconds $(BENCH_SECONDS)
	$(VENV_PYTHON) bench/bench_mutations.py --seconds $(BENCH_SECONDS) --workload transfer --zipf
	$(VENV_PYTHON) bench/bench_batch_inserts.py --seconds $(BENCH_SECONDS)
	$(VENV_PYTHON) bench/bench_http.py --seconds $(BENCH_SECONDS)

# Issue 3's live-query benchmarks against a throw-away PostgreSQL (installed
# with apt-get if missing; bench/postgres.py). The `bench` extra brings psycopg.
bench-live: venv $(VENV)/.installed-bench
	$(VENV_PYTHON) bench/bench_ws.py --seconds $(BENCH_SECONDS)
	$(VENV_PYTHON) bench/bench_live.py --seconds $(BENCH_SECONDS)

$(VENV)/.installed-bench: pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install --quiet -e '.[test,bench]'
	touch $@

# Removes the example app's data folder (the next `make run` starts empty).
clean-data:
	rm -rf examples/chat/.eddy
