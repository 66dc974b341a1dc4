# Eddy's everyday commands. `make run` and `make test` work on a fresh
# machine: they create .venv and install Eddy into it first.
#
# The install re-runs only when pyproject.toml is newer than the stamp file
# in .venv, so a second `make test` starts at once.

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
INSTALL_STAMP := $(VENV)/.installed
BENCH_SECONDS ?= 10

.PHONY: venv run test test-fast bench clean-data

venv: $(INSTALL_STAMP)

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

$(INSTALL_STAMP): pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install --quiet -e '.[test]'
	touch $(INSTALL_STAMP)

# Serves the example app on http://127.0.0.1:3210 with its data in
# examples/chat/.eddy (the default data folder).
run: venv
	$(VENV)/bin/eddy dev examples/chat --port 3210

test: venv
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

# Removes the example app's data folder (the next `make run` starts empty).
clean-data:
	rm -rf examples/chat/.eddy
