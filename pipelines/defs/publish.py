"""The analyst database as a Dagster asset: the last step of every run, after all marts and their checks.

It depends on every mart and lookup, so a run where dbt fails (a failing dbt test of severity error fails the
dbt step) or a blocking check fails upstream (the GX contract checks, identity_graph_health) skips it, and
analysts keep the previous, consistent file. The copy itself is pipelines/publish.py.
"""

from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from pipelines.defs.dbt import oneid_dbt_models
from pipelines.defs.resources import OneIdPaths
from pipelines.publish import PUBLISHED_SCHEMAS, publish
from pipelines.settings import ANALYST_DATABASE_NAME

ANALYST_DB_KEY = AssetKey(["publish", "analyst_db"])
PUBLISHED_UPSTREAM = sorted(
    (key for key in oneid_dbt_models.keys if key.path[0] in PUBLISHED_SCHEMAS), key=lambda k: k.to_user_string()
)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value).replace("|", "\\|")


def markdown_table(header: list[str], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def publish_summary(con) -> dict:
    """Headline numbers of the marts for the materialization page (read from the published copy's source)."""
    orders = con.sql(
        "select count(*) filter (where is_paid_order), coalesce(sum(net_amount) filter (where is_paid_order), 0), "
        "count(distinct user_id) filter (where is_paid_order) from marts.fct_orders"
    ).fetchall()[0]
    users = con.sql("select count(*) from marts.dim_users").fetchall()[0][0]
    funnel = con.sql(
        "select channel_name, sum(users)::bigint as users, sum(buyers)::bigint as buyers, "
        "round(100 * sum(buyers) / nullif(sum(users), 0), 2)::double as conversion_pct, "
        "sum(paid_orders)::bigint as paid_orders, "
        "round(sum(net_gmv) / nullif(sum(paid_orders), 0), 2)::double as average_order_value, "
        "sum(net_gmv)::double as net_gmv "
        "from marts.fct_gmv_funnel_cohort group by channel_name order by net_gmv desc nulls last, channel_name"
    ).fetchall()
    return {"paid_orders": int(orders[0]), "net_gmv": float(orders[1]), "buyers": int(orders[2]), "users": int(users),
            "funnel": funnel}


@asset(
    key=ANALYST_DB_KEY,
    group_name="publish",
    compute_kind="duckdb",
    deps=PUBLISHED_UPSTREAM,
    description=(
        "The analyst database (ONEID_ANALYST_DATABASE, default analyst.duckdb beside the warehouse): a separate "
        "DuckDB file with every table of schemas marts and seeds, one row per row of those tables, plus "
        "oneid.published_tables (one row per published table with its row count). Replaced atomically; open it "
        "read-only. Skipped when dbt or a blocking check upstream fails, so the previous file stays."
    ),
)
def analyst_db(context: AssetExecutionContext, warehouse: DuckDBResource, paths: OneIdPaths) -> MaterializeResult:
    """Copies the marts and seeds to the analyst database; one row there per row of the warehouse's tables."""
    target = Path(paths.analyst_database or Path(warehouse.database).parent / ANALYST_DATABASE_NAME)
    with warehouse.get_connection() as con:
        result = publish(con, target, publish_id=context.run.run_id)
        summary = publish_summary(con)
    context.log.info(
        f"published {len(result.tables)} tables ({result.bytes / 1e6:.1f} MB) to {result.path}; "
        f"net GMV {summary['net_gmv']:,.2f} yuan"
    )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(result.path)),
            "publish_id": MetadataValue.text(result.publish_id),
            "tables": MetadataValue.int(len(result.tables)),
            "bytes": MetadataValue.int(result.bytes),
            "row_counts": MetadataValue.md(
                markdown_table(["table", "rows"], sorted(result.tables.items()))
            ),
            "users": MetadataValue.int(summary["users"]),
            "buyers": MetadataValue.int(summary["buyers"]),
            "paid_orders": MetadataValue.int(summary["paid_orders"]),
            "net_gmv": MetadataValue.float(round(summary["net_gmv"], 2)),
            "funnel_by_channel": MetadataValue.md(
                markdown_table(
                    ["channel", "users", "buyers", "conversion %", "paid orders", "AOV (yuan)", "net GMV (yuan)"], summary["funnel"]
                )
            ),
        }
    )


publish_assets = [analyst_db]
