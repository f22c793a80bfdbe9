"""`make demo`: run the whole graph on the bundled sample brand and print what came out.

The summary is read back from the warehouse, so it shows the state of the tables, not what the code meant to
write; identity accuracy is scored against the sample's ground truth, which only this evaluation reads.
"""

from __future__ import annotations

import os
import sys
import time

import duckdb
import polars as pl
from dagster import DagsterInstance

import identity
from identity.connection import connect
from identity.privacy import DEMO_KEY_ENV, KEY_ENV, MissingKeyError, demo_key_notice, hmac_key
from pipelines.settings import DEFAULT_LANDING, REPO_ROOT, Settings


def run_pipeline() -> bool:
    from pipelines.definitions import FULL_RUN_JOB_NAME, defs

    try:
        instance = DagsterInstance.get()
    except Exception:  # no DAGSTER_HOME: the run is still real, just not kept for the UI
        instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def(FULL_RUN_JOB_NAME).execute_in_process(instance=instance, raise_on_error=False)
    return result.success


def summarize(con: duckdb.DuckDBPyConnection) -> dict:
    loaded = con.sql(
        "select source, count(*) filter (where status = 'loaded') as files, "
        "count(*) filter (where status = 'rejected') as rejected_files, "
        "coalesce(sum(rows_loaded), 0) as rows_loaded, coalesce(sum(rows_quarantined), 0) as rows_quarantined "
        "from raw.load_log group by source order by source"
    ).pl()
    users = con.sql("select count(distinct user_id) as users from identity.record_map").fetchall()[0][0]
    per_user = con.sql(
        "with per_user as (select user_id, count(*) as identities from identity.id_map group by user_id) "
        "select identities, count(*) as users from per_user group by identities order by identities"
    ).pl()
    users_without_identity = con.sql(
        "select count(distinct r.user_id) from identity.record_map r "
        "anti join identity.id_map i on r.user_id = i.user_id"
    ).fetchall()[0][0]
    orders = con.sql(
        "select count(*) as orders, count(user_id) as orders_with_user, "
        "coalesce(sum(net_amount), 0) as net_gmv, "
        "coalesce(sum(net_amount) filter (where user_id is not null), 0) as net_gmv_with_user "
        "from marts.fct_orders"
    ).pl().row(0, named=True)
    return {
        "loaded": loaded,
        "users": users,
        "identities_per_user": per_user,
        "users_without_identity": users_without_identity,
        "orders": orders,
    }


def score(con: duckdb.DuckDBPyConnection, settings: Settings) -> dict | None:
    if not settings.truth_file.exists():
        return None
    truth = pl.read_csv(settings.truth_file, infer_schema=False)
    predicted = con.sql("select source, record_id, user_id from identity.record_map").pl()
    return identity.pairwise_scores(predicted, truth)


def format_summary(summary: dict, scores: dict | None) -> str:
    lines = ["", "OneID demo summary", "==================", "Rows loaded per source:"]
    for row in summary["loaded"].iter_rows(named=True):
        lines.append(
            f"  {row['source']:<16} {row['rows_loaded']:>8,} rows from {row['files']} file(s), "
            f"{row['rows_quarantined']:,} quarantined"
            + (f", {row['rejected_files']} file(s) rejected" if row["rejected_files"] else "")
        )
    total_quarantined = int(summary["loaded"]["rows_quarantined"].sum())
    lines.append(f"Rows quarantined (see raw.quarantine): {total_quarantined:,}")
    lines.append(f"Unified users: {summary['users']:,}")
    lines.append("Users by number of identifiers:")
    if summary["users_without_identity"]:
        lines.append(f"  {0:>3} identifiers: {summary['users_without_identity']:,} users")
    for row in summary["identities_per_user"].iter_rows(named=True):
        lines.append(f"  {row['identities']:>3} identifiers: {row['users']:,} users")
    orders = summary["orders"]
    lines.append(
        f"Orders: {orders['orders']:,}, of which {orders['orders_with_user']:,} attributed to a unified user"
    )
    lines.append(
        f"Net GMV: {orders['net_gmv']:,.2f} yuan, of which {orders['net_gmv_with_user']:,.2f} attributed to a user"
    )
    if scores is None:
        lines.append("Identity accuracy: no ground truth file, not scored")
    else:
        lines.append(
            f"Identity accuracy vs ground truth ({scores['records']:,} records): "
            f"pairwise precision {scores['precision']:.4f}, recall {scores['recall']:.4f}"
        )
    return "\n".join(lines)


def main() -> int:
    settings = Settings.from_env()
    if not settings.landing_dir.is_dir() or not any(p.is_file() for p in settings.landing_dir.rglob("*")):
        print(f"No export files under {settings.landing_dir}: set ONEID_LANDING_DIR to a landing folder "
              "(the bundled sample is data/sample/landing).", file=sys.stderr)
        return 2
    if not os.environ.get(KEY_ENV) and settings.landing_dir.resolve() == (REPO_ROOT / DEFAULT_LANDING).resolve():
        # The bundled sample is fake: the public demo key is fine there, and only there (docs/privacy.md).
        os.environ[DEMO_KEY_ENV] = "1"
    try:
        _, is_demo = hmac_key()
    except MissingKeyError as error:
        print(error, file=sys.stderr)
        return 2
    if is_demo:
        print(f"NOTE: {demo_key_notice()}", file=sys.stderr)
    started = time.perf_counter()
    ok = run_pipeline()
    elapsed = time.perf_counter() - started
    if not ok:
        print(f"The pipeline run failed after {elapsed:.1f}s; see the log above.", file=sys.stderr)
        return 1
    with connect(str(settings.database), read_only=True) as con:
        print(format_summary(summarize(con), score(con, settings)))
    print(f"Pipeline run: {elapsed:.1f}s. Warehouse: {settings.database}")
    with connect(str(settings.analyst_path), read_only=True) as con:
        tables, published_at = con.sql("select count(*), max(published_at) from oneid.published_tables").fetchall()[0]
    print(f"Analyst database ({tables} tables of marts and lookups, published {published_at:%Y-%m-%d %H:%M:%S} "
          f"China time; open it read-only, see docs/analysts.md): {settings.analyst_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
