# OneID: `make demo` runs the pipeline on the bundled sample brand, `make test` runs the test suite.
# Both create the virtual environment on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster
# The warehouse file (default as in pipelines/settings.py); dbt reads it from the environment, even to parse.
export ONEID_DATABASE ?= $(CURDIR)/data/oneid.duckdb

.PHONY: setup demo test ui manifest docs sample bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\n' > $@

# dbt's manifest, which Dagster reads to know the dbt models; parsed again whenever models change.
manifest: setup
	$(BIN)/dbt parse --quiet --project-dir $(CURDIR)/dbt_project --profiles-dir $(CURDIR)/dbt_project

demo: setup manifest $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pipelines.demo

test: setup manifest $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pytest

# dbt's documentation site (lineage graph, every model's columns and tests) in dbt_project/target: open
# dbt_project/target/index.html or run `.venv/bin/dbt docs serve --project-dir dbt_project`. The catalog (column
# types, row counts) is read from the warehouse, so run it after `make demo`.
docs: setup manifest
	$(BIN)/dbt docs generate --quiet --project-dir $(CURDIR)/dbt_project --profiles-dir $(CURDIR)/dbt_project
	@echo "dbt docs written to $(CURDIR)/dbt_project/target/index.html"

# On the bundled fake sample (no ONEID_LANDING_DIR, no ONEID_HMAC_KEY) the UI's runs use the public demo key,
# as `make demo` does; with a landing folder of real exports a run needs ONEID_HMAC_KEY (docs/privacy.md).
ui: setup manifest $(DAGSTER_HOME)/dagster.yaml
	@if [ -z "$$ONEID_HMAC_KEY" ] && [ -z "$$ONEID_LANDING_DIR" ]; then \
	  echo "NOTE: bundled fake sample: runs use the public demo HMAC key (set ONEID_HMAC_KEY for real exports)"; \
	  export ONEID_ALLOW_DEMO_KEY=1; fi; \
	$(BIN)/dagster dev -w workspace.yaml

# Times the whole graph per step on a generated brand (data/generated/, git-ignored): `make bench BENCH_USERS=100000`.
# BENCH_ACTIVITY=4.25 makes about 10 source rows per person instead of 5 (docs/sample-data.md, "Activity").
BENCH_USERS ?= 1000000
BENCH_ACTIVITY ?= 1
bench: setup manifest
	$(BIN)/python bench/pipeline.py --users $(BENCH_USERS) --activity $(BENCH_ACTIVITY)

# Regenerates the bundled sample exactly (see docs/sample-data.md).
sample: setup
	$(BIN)/oneid-sample --users 2000 --seed 20251123 --out data/sample

clean:
	rm -rf data/oneid.duckdb data/oneid.duckdb.wal data/analyst.duckdb dbt_project/target dbt_project/logs .pytest_cache
