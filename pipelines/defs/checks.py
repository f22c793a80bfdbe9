"""Data-quality checks on the ingest assets (Great Expectations suites run as Dagster asset checks)."""

ingest_checks: list = []
