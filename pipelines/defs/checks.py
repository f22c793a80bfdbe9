"""Data-quality checks on the ingest assets (Great Expectations suites run as Dagster asset checks).

Each `raw/<source>` asset gets two checks, computed together from one run of the table's GX suite
(config/expectations.yml, library in pipelines/validation):

- `contract` (blocking): the rules of severity `error`, i.e. the raw contract of docs/data-contracts.md. It fails
  with severity ERROR, and because it is blocking, Dagster skips every asset downstream of the raw table in
  that run (identity resolution, the dbt models): broken rows never reach a user id or a mart.
- `quality`: the rules of severity `warn`. It fails with severity WARN and stops nothing.

Both carry metadata per expectation (unexpected count and percent, a few masked example values) and a
summary table, so the asset page says what is wrong without SQL. See docs/validation.md.
"""


from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetChecksDefinition,
    MetadataValue,
    multi_asset_check,
)
from dagster_duckdb import DuckDBResource

from pipelines.defs.ingest import RAW_ASSET_KEYS
from pipelines.memory import release_free_memory
from pipelines.defs.resources import OneIdPaths

CONFIG_FILE = "expectations.yml"
CONTRACT_CHECK = "contract"
QUALITY_CHECK = "quality"
_SHANGHAI = ZoneInfo("Asia/Shanghai")

_CHECKS = {
    # check name: (rule severity, Dagster severity, blocking, description)
    CONTRACT_CHECK: (
        "error", AssetCheckSeverity.ERROR, True,
        "Great Expectations suite, contract rules (severity error in config/expectations.yml): required ids, "
        "identifier scopes, canonical statuses and sets, amounts. Blocking: a failure stops identity and dbt.",
    ),
    QUALITY_CHECK: (
        "warn", AssetCheckSeverity.WARN, False,
        "Great Expectations suite, quality rules (severity warn in config/expectations.yml): identifier formats, "
        "plausible times, phone forms. A failure warns and stops nothing.",
    ),
}


def run_started_at(context: AssetCheckExecutionContext) -> datetime | None:
    """When the current run started, as naive China time (the clock of `_loaded_at`); None if unknown."""
    try:
        record = context.instance.get_run_record_by_id(context.run.run_id)
    except Exception:  # noqa: BLE001 -- an instance without run storage: validate without the hint
        return None
    if record is None or record.start_time is None:
        return None
    return datetime.fromtimestamp(record.start_time, _SHANGHAI).replace(tzinfo=None)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(results) -> str:
    lines = [
        "| expectation | column | result | unexpected | % of non-null | examples (masked) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        columns = ", ".join(r.rule.columns)
        outcome = "error: " + r.error if r.error else ("passed" if r.success else "FAILED")
        count = "" if r.unexpected_count is None else f"{r.unexpected_count:,}"
        percent = "" if r.unexpected_percent is None else f"{r.unexpected_percent:.3f}"
        examples = ", ".join(f"`{e}`" for e in r.examples)
        cells = (r.rule.describe(), columns, outcome, count, percent, examples)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def check_results(validation) -> list[AssetCheckResult]:
    """The two AssetCheckResults of one TableValidation (pure: no Dagster context needed)."""
    asset_key = RAW_ASSET_KEYS[validation.table]
    out = []
    for check_name, (rule_severity, severity, _, _) in _CHECKS.items():
        results = validation.results_of(rule_severity)
        failed = validation.failures(rule_severity)
        metadata = {
            "suite": MetadataValue.text(f"raw.{validation.table}"),
            "rows_validated": MetadataValue.int(validation.rows_validated),
            "rows_in_table": MetadataValue.int(validation.rows_in_table),
            "rows_scope": MetadataValue.text(validation.scope),
            "validation_seconds": MetadataValue.float(float(validation.seconds)),
            "expectations": MetadataValue.int(len(results)),
            "expectations_failed": MetadataValue.int(len(failed)),
            "results": MetadataValue.md(_markdown_table(results)),
        }
        for r in results:
            metadata[f"expectation: {r.rule.name}"] = MetadataValue.json(r.as_metadata())
        out.append(
            AssetCheckResult(
                asset_key=asset_key,
                check_name=check_name,
                passed=not failed,
                severity=severity,
                metadata=metadata,
                description=validation.summary(rule_severity),
            )
        )
    return out


def build_raw_checks(source: str) -> AssetChecksDefinition:
    asset_key = RAW_ASSET_KEYS[source]

    @multi_asset_check(
        name=f"validate_raw_{source}",
        specs=[
            AssetCheckSpec(name, asset=asset_key, blocking=blocking, description=description)
            for name, (_, _, blocking, description) in _CHECKS.items()
        ],
        compute_kind="great_expectations",
        description=f"Runs the Great Expectations suite raw.{source} of config/expectations.yml.",
    )
    def _validate(context: AssetCheckExecutionContext, warehouse: DuckDBResource, paths: OneIdPaths):
        from pipelines import validation  # GX is heavy: import it when a check runs, not when defs load

        config = validation.load_config(Path(paths.config_dir) / CONFIG_FILE)
        with warehouse.get_connection() as con:
            result = validation.validate_table(con, source, config, since=run_started_at(context))
        release_free_memory()  # the suite's pandas frame is gone; its heap would otherwise stay with the process
        context.log.info(
            f"raw.{source}: validated {result.rows_validated:,} of {result.rows_in_table:,} rows ({result.scope}) "
            f"in {result.seconds:.2f}s"
        )
        for failure in result.failures("error"):
            context.log.error(f"contract check failed: {failure.message()}")
        for failure in result.failures("warn"):
            context.log.warning(f"quality check failed: {failure.message()}")
        yield from check_results(result)

    return _validate


ingest_checks: list[AssetChecksDefinition] = [build_raw_checks(source) for source in RAW_ASSET_KEYS]
