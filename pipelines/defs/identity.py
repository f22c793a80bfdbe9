"""Identity resolution as Dagster assets: raw tables → observations → one user id per person.

The warehouse keeps the identity state between runs (docs/identity.md, "State"): the latest identity tables in
schema `identity`, the id registry, merge log and run log in schema `identity_state`. Each run is incremental
when it can be (same rules, and every observation of the last run still there): only the users the new
observations touch are resolved again; otherwise it is a full run against the same state, so ids stay stable.
A run whose largest user exceeds `max_user_size` (config/identity.yml) is not published: its tables go to schema
`identity_candidate` and the blocking `identity_graph_health` check fails, so the marts are not rebuilt on it.
"""


import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    MetadataValue,
    Output,
    asset_check,
    multi_asset,
)
from dagster_duckdb import DuckDBResource

import identity
from identity.privacy import demo_key_notice, hmac_key, identity_key_text, keyed_hash_series, mask_phone
from identity.health import graph_health, markdown
from identity.state import (
    HISTORY_SCHEMA,
    LATEST_SCHEMA,
    as_input,
    config_hash,
    load_staged,
    load_state,
    read_parquet_frame,
    run,
    save_changes,
    stage_state,
    write_table,
)
from pipelines.defs.ingest import RAW_ASSET_KEYS
from pipelines.faults import crash_point
from pipelines.memory import release_free_memory
from pipelines.defs.resources import OneIdPaths
from pipelines.observations import export_observations, scratch_folder

IDENTITY_TABLES = {
    "observations": "One row per identifier seen on a record (normalized value, strength, time first seen).",
    "record_map": "One row per record of every raw source: the unified user id it belongs to.",
    "id_map": "One row per usable identity (id_type, scope, value): the unified user id holding it.",
    "rejected_links": "One row per link refused because it would give a user two values of a unique type.",
    "blocked_values": "One row per identifier value that links nothing: junk, blocklisted or shared.",
    "users": "One row per unified user: anchor identity, first seen, identities and records held.",
    "links": "One row per record-identity link with its fate: joined (spanning tree), redundant or rejected.",
    "merge_log": "Every merge and split of user ids across runs: old id, new id, run, the link or reason.",
    "runs": "One row per identity run: full or incremental, records resolved, new users, merges, splits.",
    "phone_keys": "One row per usable phone: the user id, the masked phone and its HMAC-SHA256 (docs/privacy.md).",
}
PHONE_KEYS = "phone_keys"
CANDIDATE_SCHEMA = "identity_candidate"
ATTEMPT_TABLE = "last_attempt"


def phone_keys(id_map: pl.DataFrame, key: bytes) -> pl.DataFrame:
    """What analysts may see of a phone: masked, and keyed-hashed so lists can be matched without the number."""
    phones = id_map.filter(pl.col("id_type") == "phone").select("user_id", "id_value").sort("user_id", "id_value")
    # the value comes last in the hashed text, so one prefix serves every phone
    key_texts = identity_key_text("phone", "", "") + phones["id_value"]
    return pl.DataFrame(
        {
            "user_id": phones["user_id"],
            "phone_masked": [mask_phone(v) for v in phones["id_value"].to_list()],
            "phone_hmac": keyed_hash_series(key, key_texts),
        },
        schema={"user_id": pl.String, "phone_masked": pl.String, "phone_hmac": pl.String},
    )


class PhaseClock:
    """Seconds per phase of a step, so that a slow run says where its time went."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self._last, 1)
        self._last = now

    def text(self) -> str:
        return ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in self.seconds.items())


def load_whole_state(con, config) -> bool:
    """Whether the state can be loaded with its per-row tables, for an incremental run: not above
    `incremental_max_observations` observations. An incremental run holds the whole state in memory (about 13 GB
    at 27M observations, beside the observations read); a full run with the state's ids needs only its maps."""
    limit = config.incremental_max_observations
    if limit is None:
        return True
    found = con.execute(
        "select count(*) from duckdb_tables() where schema_name = ? and table_name = 'observations'", [LATEST_SCHEMA]
    ).fetchall()[0][0]
    if not found:
        return True
    (count,) = con.sql(f'select count(*) from "{LATEST_SCHEMA}".observations').fetchall()[0]
    return count <= limit


def plan_run(state, observations: pl.DataFrame, config) -> tuple[bool, pl.DataFrame, str]:
    """(incremental?, observations to give `run`, why). Incremental when the state was made with the same rules
    and every one of its observations is still there; the batch is then the observations it has not seen."""
    if state is None:
        return False, observations, "no state yet"
    if state.partial:
        limit = config.incremental_max_observations
        return False, observations, f"state above incremental_max_observations ({limit:,}): full run with its ids"
    if state.last_run["config_hash"] != config_hash(config):
        return False, observations, "identity rules changed"
    keys = ["source", "record_id", "id_type", "scope", "raw_value", "observed_at", "strength"]
    current = identity.normalize_observations(observations, config)
    previous = state.observations.select(keys).cast(current.select(keys).schema)
    gone = previous.join(current.select(keys), on=keys, how="anti", nulls_equal=True)
    if gone.height:
        return False, observations, f"{gone.height} observations of the last run are gone or changed"
    batch = current.join(previous, on=keys, how="anti", nulls_equal=True)
    return True, as_input(batch), f"{batch.height} new observations"


@multi_asset(
    outs={
        name: AssetOut(key=AssetKey(["identity", name]), description=description, group_name="identity")
        for name, description in IDENTITY_TABLES.items()
    },
    deps=list(RAW_ASSET_KEYS.values()),
    compute_kind="python",
)
def identity_resolution(context: AssetExecutionContext, warehouse: DuckDBResource, paths: OneIdPaths):
    """Resolves every record of every raw source to one unified user id, with the rules of config/identity.yml,
    keeping ids stable across runs (state in the warehouse) and re-resolving only what new data touches."""
    # Before any work: a run that cannot hash must fail now, with the message saying how to fix it.
    key, is_demo = hmac_key()
    if is_demo:
        context.log.warning(demo_key_notice())
    config_dir = Path(paths.config_dir)
    config = identity.load_config(config_dir / "identity.yml")
    started = datetime.now().replace(microsecond=0)
    clock = time.perf_counter()
    phases = PhaseClock()
    release_free_memory()  # what earlier steps of this process freed, before the largest step of the run
    # The connection is closed before the observations are read and while resolving: DuckDB keeps memory its
    # queries used until the connection closes, and the run lock, not the connection, keeps other writers out.
    scratch_dir = scratch_folder(warehouse.database)
    with tempfile.TemporaryDirectory(prefix="oneid-observations-", dir=scratch_dir) as scratch:
        exported = Path(scratch) / "observations.parquet"
        with warehouse.get_connection() as con:
            state = load_state(con, scratch=scratch, per_row_tables=load_whole_state(con, config))
            export_observations(con, config_dir, exported)
        observations = read_parquet_frame(exported)
    phases.lap("read")
    incremental, given, why = plan_run(state, observations, config)
    del observations  # `given` is all of them or the new batch; the rest is in `state`
    # user ids keyed like the phone hashes: an unkeyed digest of a phone anchor would re-identify the user
    result = run(given, config, state, incremental=incremental, started_at=started, id_key=key)
    del given, state
    health = graph_health(result.state.tables(), result.run, result.events, max_user_size=config.max_user_size)
    published = health["passed"]
    # A published incremental run writes only what it changed (the touched users' rows and the records it
    # re-resolved) instead of every table of the state again.
    changes = result.changes if published else None
    keys = phone_keys(changes.added["id_map"] if changes else result.state.tables()["id_map"], key)
    info, stats = result.run, result.resolution.stats
    phases.lap("resolve")
    with tempfile.TemporaryDirectory(prefix="oneid-state-", dir=scratch_dir) as scratch:
        if published and changes is None:
            # Staged to Parquet, then the frames dropped before DuckDB takes them in: its insert would otherwise
            # grow the process on top of the state it is given (docs/identity.md, "Implementation and performance").
            staged = stage_state(result.state, scratch, extra={PHONE_KEYS: keys})
            rows = staged.rows
            del result, keys
            release_free_memory()
            phases.lap("stage")
        elif not published:
            candidate = {**result.state.tables(), PHONE_KEYS: keys}
            rows = {name: frame.height for name, frame in candidate.items()}
        with warehouse.get_connection() as con:
            crash_point("identity:before_publish")
            if changes is not None:
                rows = save_changes(con, result.state, changes, extra={PHONE_KEYS: keys})
                crash_point("identity:after_publish")
            elif published:
                load_staged(con, staged)
                crash_point("identity:after_publish")
            else:
                # keep the previous tables; leave the candidate where people can look at it
                con.execute("begin transaction")
                for name, frame in candidate.items():
                    write_table(con, CANDIDATE_SCHEMA, name, frame)
                con.execute("commit")
            attempt = pl.DataFrame(
                [
                    {
                        "attempted_at": started,
                        "run_id": info["run_id"],
                        "mode": info["mode"],
                        "published": published,
                        "largest_user_size": health["largest_user_size"],
                        "max_user_size": config.max_user_size,
                        "health": json.dumps({k: v for k, v in health.items() if k != "run"}, default=str),
                    }
                ]
            )
            write_table(con, HISTORY_SCHEMA, ATTEMPT_TABLE, attempt)
    phases.lap("write")
    seconds = time.perf_counter() - clock
    context.log.info(
        f"identity run {info['run_id']} ({info['mode']}: {why}): {info['resolved_records']:,} of "
        f"{info['records']:,} records resolved in {seconds:.1f}s; {info['new_users']} new users, "
        f"{info['merges']} merges, {info['splits']} splits; published: {published} ({phases.text()})"
    )
    if not published:
        context.log.error(
            f"largest user holds {health['largest_user_size']:,} records > max_user_size "
            f"{config.max_user_size:,}: not published (see schema {CANDIDATE_SCHEMA})"
        )
    tables_md = markdown(health)
    for name in IDENTITY_TABLES:
        metadata = {"rows": MetadataValue.int(rows[name]), "published": MetadataValue.bool(published)}
        if name == "record_map":
            metadata.update(
                {
                    "mode": MetadataValue.text(f"{info['mode']} ({why})"),
                    "run_id": MetadataValue.int(int(info["run_id"])),
                    "records_resolved": MetadataValue.int(int(info["resolved_records"])),
                    "seconds": MetadataValue.float(round(seconds, 3)),
                    "seconds_by_phase": MetadataValue.json(phases.seconds),
                    "users": MetadataValue.int(int(health["users"])),
                    "new_users": MetadataValue.int(int(info["new_users"])),
                    "merges": MetadataValue.int(int(info["merges"])),
                    "splits": MetadataValue.int(int(info["splits"])),
                    "largest_user_size": MetadataValue.int(int(health["largest_user_size"])),
                    "links_rejected": MetadataValue.int(int(stats["links_rejected"])),
                    "values_blocked": MetadataValue.int(int(stats["values_blocked"])),
                    "values_shared": MetadataValue.int(int(stats["values_shared"])),
                    "size_distribution": MetadataValue.md(tables_md["size_distribution"]),
                }
            )
        yield Output(None, output_name=name, metadata=metadata)


@asset_check(
    asset=AssetKey(["identity", "record_map"]),
    name="identity_graph_health",
    blocking=True,
    description="Cluster sizes, largest users, identifiers per user, blocked/shared values, refused links, merges "
    "and splits of the last run. Fails (and blocks the marts) when the largest user exceeds max_user_size.",
)
def identity_graph_health(context: AssetCheckExecutionContext, warehouse: DuckDBResource) -> AssetCheckResult:
    with warehouse.get_connection() as con:
        rows = con.sql(
            f'select published, largest_user_size, max_user_size, health, run_id, mode '
            f'from "{HISTORY_SCHEMA}"."{ATTEMPT_TABLE}"'
        ).fetchall()
    if not rows:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, description="no identity run yet")
    published, largest, limit, health_json, run_id, mode = rows[0]
    health = json.loads(health_json)
    tables_md = markdown(health)
    description = (
        f"run {run_id} ({mode}): largest user {largest:,} records"
        + (f" (limit {limit:,})" if limit is not None else " (no limit)")
        + f"; {health['merges']} merges, {health['splits']} splits since the previous run"
        + ("" if published else f"; NOT published, candidate tables in schema {CANDIDATE_SCHEMA}")
    )
    blocked = health["blocked_values"]
    blocked_md = "\n".join(
        ["| reason | values | records |", "|---|---:|---:|"]
        + [f"| {reason} | {v['values']:,} | {v['records']:,} |" for reason, v in sorted(blocked.items())]
    )
    return AssetCheckResult(
        passed=bool(published),
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "users": MetadataValue.int(int(health["users"])),
            "largest_user_size": MetadataValue.int(int(largest)),
            "max_user_size": MetadataValue.int(int(limit)) if limit is not None else MetadataValue.text("none"),
            "mean_identities_per_user": MetadataValue.float(float(health["mean_identities_per_user"])),
            "size_distribution": MetadataValue.md(tables_md["size_distribution"]),
            "largest_users": MetadataValue.md(tables_md["largest_users"]),
            "identities_per_user": MetadataValue.md(tables_md["identities_per_user"]),
            "values_shared": MetadataValue.int(int(blocked.get("shared", {}).get("values", 0))),
            "values_blocked": MetadataValue.int(
                sum(int(v["values"]) for reason, v in blocked.items() if reason != "shared")
            ),
            "blocked_and_shared_values": MetadataValue.md(blocked_md),
            "blocked_values": MetadataValue.json(health["blocked_values"]),
            "rejected_links": MetadataValue.json(health["rejected_links"]),
            "merges": MetadataValue.int(int(health["merges"])),
            "splits": MetadataValue.int(int(health["splits"])),
        },
    )


identity_checks: list = [identity_graph_health]
