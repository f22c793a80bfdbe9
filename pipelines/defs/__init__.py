"""Dagster definitions, one module per area; `pipelines.definitions` merges them into one `Definitions`."""
