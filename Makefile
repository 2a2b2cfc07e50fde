# Two commands set everything up on a fresh machine:
#   make demo   run one whole alignment cycle on the embedded SQLite store (it leaves its
#               Prefect server running for the next demo; make demo-stop stops it)
#   make test   run the whole test suite
# Both create .venv and install the project into it when needed.
# On a server (web app, workers): make install-server, which installs the app and the
# PostgreSQL driver only (no test tools, no browser, no test run).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The suites run on up to 4 cores at once (pytest-xdist); WORKERS= runs them in one process.
WORKERS ?= -n auto --maxprocesses 4

.PHONY: demo demo-stop test test-postgres test-integration lint bench serve install-server clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

# Editable, like the development install: workers run the flows from this folder (prefect.yaml
# has no pull step), so the code they import and the code the deployments point at are one.
install-server:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[postgres]"
	@$(BIN)/aligncycle --help >/dev/null && echo "aligncycle installed in $(VENV) (server: app + PostgreSQL driver)"

demo: $(STAMP)
	@$(BIN)/aligncycle demo

# The demo leaves its Prefect server running for the next demo (and its UI); this stops it.
demo-stop:
	@test -x $(BIN)/aligncycle && $(BIN)/aligncycle demo --stop || true

test: $(STAMP)
	@bash .ci/install-browser.sh   # Debian's Chromium for the browser journeys (no-op if present)
	@bash .ci/install-axe.sh       # axe-core from npm for the accessibility checks (no-op if present)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/python -m pytest -q -m "not integration" $(WORKERS)

# The same suite against PostgreSQL (needs a server; CI has one on 127.0.0.1:5432).
test-postgres: $(STAMP)
	@ALIGNCYCLE_TEST_DATABASE_URL=$${ALIGNCYCLE_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres} \
		$(BIN)/python -m pytest -q -m "not sqlite_only and not integration" $(WORKERS)

# A real Prefect server + worker on PostgreSQL, deployments, cadence flows, phase runs, and the
# Prefect UI in Chromium (about 4 to 6 minutes).
test-integration: $(STAMP)
	@bash .ci/install-browser.sh   # the Prefect UI check drives Debian's Chromium
	@$(BIN)/python -m pytest -q -m integration tests/test_cadence_integration.py tests/test_phase_dispatch_integration.py tests/test_cadence_rerun_integration.py

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

# The peers the benchmarks measure against (DuckDB, pandas): only for `make bench`.
$(VENV)/.bench: $(STAMP) pyproject.toml
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[postgres,bench]"
	@touch $@

bench: $(VENV)/.bench
	@$(BIN)/python -m bench

serve: $(STAMP)
	@$(BIN)/aligncycle serve

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
