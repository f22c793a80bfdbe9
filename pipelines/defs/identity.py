"""Identity resolution as Dagster assets: raw tables → observations → one user id per person.

The warehouse keeps the identity state between runs (docs/identity.md, "State"): the latest identity tables in
schema `identity`, the id registry, merge log and run log in schema `identity_state`. Each run is incremental
when it can be (same rules, and every observation of the last run still there): only the users the new
observations touch are resolved again; otherwise it is a full run against the same state, so ids stay stable.
A run whose largest user exceeds `max_user_size` (config/identity.yml) is not published: its tables go to schema
`identity_candidate` and the blocking `identity_graph_health` check fails, so the marts are not rebuilt on it.
"""


import hashlib
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
    BatchTouchesTooMuch,
    LATEST_SCHEMA,
    LATEST_TABLES,
    as_input,
    config_hash,
    load_staged,
    load_state,
    load_touched_state,
    memory_limit_lowered,
    read_parquet_frame,
    run,
    save_changes,
    stage_state,
    state_exists,
    table_exists,
    transaction,
    write_table,
)
from pipelines.defs.ingest import RAW_ASSET_KEYS
from pipelines.faults import crash_point
from pipelines.memory import release_free_memory
from pipelines.defs.resources import OneIdPaths
from pipelines.observations import (
    RecordSpec,
    export_observations,
    fetch_frame,
    input_files_sql,
    input_observations_sql,
    load_record_specs,
    records_in_files_sql,
    scratch_folder,
)

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


PLAN_KEYS = ["source", "record_id", "id_type", "scope", "raw_value", "observed_at", "strength"]
# The diff hashes every observation of the state or of the raw tables; beyond this DuckDB spills to disk. At 27M
# observations, done as two anti-joins: 76 s and 9.5 GB peak for the process (the raw observations held beside
# them), against 47 s and 13.3 GB without a limit; as one full outer join under this limit, 31 s and 9.5 GB.
PLAN_MEMORY_LIMIT = "2GB"


def plan_run(
    con, observations: pl.DataFrame, config, only_records: str | None = None
) -> tuple[bool, pl.DataFrame, str]:
    """(incremental?, observations to give `run`, why). Incremental when the state in the warehouse was made with
    the same rules and every one of its observations is still there; the batch is then the observations it has
    not seen. The comparison runs in DuckDB against `identity.observations`, which stays in the warehouse.
    `only_records`: a relation (source, record_id) to which both sides are limited (`plan_from_files`)."""
    last = []
    if state_exists(con):
        last = con.sql(f'select config_hash from "{HISTORY_SCHEMA}".runs order by run_id desc limit 1').fetchall()
    if not last:
        return False, observations, "no state yet"
    if last[0][0] != config_hash(config):
        return False, observations, "identity rules changed"
    stored = con.sql(f'select {", ".join(PLAN_KEYS)} from "{LATEST_SCHEMA}".observations limit 0').pl().schema
    current = identity.normalize_observations(observations, config).select(PLAN_KEYS).cast(dict(stored))
    same = " and ".join(f"p.{key} is not distinct from c.{key}" for key in PLAN_KEYS)
    limit = "" if only_records is None else (
        f"semi join {only_records} r on o.source = r.source and o.record_id = r.record_id"
    )
    con.register("current_observations", current.to_arrow())
    try:
        with memory_limit_lowered(con, PLAN_MEMORY_LIMIT):
            # one hash join finds both: the rows only the state has (gone or changed) and those only raw has (new)
            unmatched = con.sql(
                f"""
                select c.* exclude (_current), p._stored is null as _new
                from (
                    select {", ".join(f"o.{key}" for key in PLAN_KEYS)}, true as _stored
                    from "{LATEST_SCHEMA}".observations o {limit}
                ) p
                full outer join (select *, true as _current from current_observations) c on {same}
                where p._stored is null or c._current is null
                """
            ).pl()
    finally:
        con.unregister("current_observations")
    gone = unmatched.height - int(unmatched["_new"].sum())
    if gone:
        return False, observations, f"{gone} observations of the last run are gone or changed"
    batch = unmatched.drop("_new")
    return True, as_input(batch.cast(current.schema)), f"{batch.height} new observations"


EMPTY_BATCH_SCHEMA = {
    **{name: pl.String for name in ("source", "record_id", "id_type", "scope", "id_value")},
    "observed_at": pl.Datetime("us"),
    "strength": pl.String,
}
INPUT_FILES = "input_files"  # in HISTORY_SCHEMA: the raw files behind the published state (`input_files`)
INPUT_FILES_SCHEMA = {
    "raw_table": pl.String,
    "file_hash": pl.String,
    "rows": pl.Int64,
    "loaded_at": pl.Datetime("us"),
    "run_id": pl.Int64,
    "mapping": pl.String,
}


def mapping_fingerprint(specs: list[RecordSpec]) -> str:
    """A digest of config/observations.yml as parsed: another mapping makes other observations of the same rows."""
    return hashlib.sha256(repr(specs).encode("utf-8")).hexdigest()


def input_files(con, specs: list[RecordSpec]) -> pl.DataFrame | None:
    """The raw files behind the observations now (`input_files_sql`), or None when a raw table was not written by
    ingest (no `_file_hash` or `_loaded_at`): then only the comparison of every observation can tell what is new.
    Any other error of the query is raised, not taken for "no list"."""
    tables = sorted({spec.table for spec in specs})
    with_both = con.execute(
        "select count(*) from (select table_name from information_schema.columns where table_schema = 'raw' "
        "and table_name in (select unnest(?)) and column_name in ('_file_hash', '_loaded_at') "
        "group by table_name having count(*) = 2)",
        [tables],
    ).fetchall()[0][0]
    if with_both < len(tables):
        return None
    files = con.sql(input_files_sql(specs)).pl()
    return files.cast({name: INPUT_FILES_SCHEMA[name] for name in files.columns})


def plan_from_files(
    con, specs: list[RecordSpec], files: pl.DataFrame, config
) -> tuple[bool, pl.DataFrame | None, str] | None:
    """`plan_run` without reading every observation: the raw files are compared with those behind the published
    state (`INPUT_FILES`, written by the run that published it). When every one of those is still there,
    unchanged, and only new files were added, the observations that can differ are those of the records with a
    row in a new file; they are read (with all their rows, from every file) and compared with the state's
    observations of the same records. None when the files cannot tell (no list of them for the last run,
    another mapping, a file gone or reloaded, rows forgotten): then every observation is compared. Returns
    (False, None, why) when the run must be full."""
    if not state_exists(con) or not table_exists(con, HISTORY_SCHEMA, INPUT_FILES):
        return None
    last = con.sql(f'select run_id, config_hash from "{HISTORY_SCHEMA}".runs order by run_id desc limit 1').fetchall()
    behind = con.sql(f'select * from "{HISTORY_SCHEMA}"."{INPUT_FILES}"').pl().cast(INPUT_FILES_SCHEMA)
    if not last or behind["run_id"].unique().to_list() != [last[0][0]]:
        return None
    if behind["mapping"].unique().to_list() != [mapping_fingerprint(specs)]:
        return None
    if last[0][1] != config_hash(config):
        return False, None, "identity rules changed"
    key = list(files.columns)
    if behind.select(key).join(files, on=key, how="anti", nulls_equal=True).height:
        return None  # a file behind the state is gone, was loaded again, or lost rows
    new_files = files.join(behind.select(key), on=key, how="anti", nulls_equal=True)
    if new_files.height == 0:
        return True, pl.DataFrame(schema=EMPTY_BATCH_SCHEMA), "no new files"
    con.register("_new_files", new_files.select("raw_table", "file_hash").to_arrow())
    try:
        con.execute(f"create or replace temp table _plan_records as {records_in_files_sql(specs, '_new_files')}")
    finally:
        con.unregister("_new_files")
    try:
        current = fetch_frame(con, input_observations_sql(specs, only_records="_plan_records"))
        incremental, batch, why = plan_run(con, current, config, only_records="_plan_records")
        (records,) = con.execute("select count(*) from _plan_records").fetchall()[0]
    finally:
        con.execute("drop table if exists _plan_records")
    if not incremental:
        return False, None, why
    return True, batch, f"{why} in {new_files.height} new files ({records:,} records)"


_TOO_MUCH = "the users it touches hold more than incremental_max_share of the records: full run"


def _touched_state_or_none(con, batch: pl.DataFrame, config):
    """The part of the state the batch touches (`load_touched_state`), or None when the users it touches hold
    more than `incremental_max_share` of the records: a full run then needs less memory, if more time (at 1M
    persons a first CRM export touched 48% of the records: 53.4 s at 11.0 GB incremental, 78.0 s at 8.4 GB
    full with the kept ids)."""
    try:
        return load_touched_state(con, batch, config, max_share=config.incremental_max_share)
    except BatchTouchesTooMuch:
        return None


def _plan_and_load(warehouse, specs: list[RecordSpec], config, config_dir: Path, scratch: Path):
    """(files behind the observations now, incremental?, observations to give `run`, why, state to give it).

    The batch comes from the files when they can tell (`plan_from_files`), else from comparing every observation
    (`plan_run`, on all of them exported to `scratch`). An incremental run gets only the touched part of the
    state, unless its users hold more than `incremental_max_share` of the records; a full run gets the state
    without its per-row tables and all the observations."""
    exported = scratch / "observations.parquet"
    state = None
    with warehouse.get_connection() as con:
        # the files behind the observations, listed before reading any: what this run publishes is from them
        files = input_files(con, specs)
        plan = plan_from_files(con, specs, files, config) if files is not None else None
        if plan is not None and plan[0]:
            # only the records in new files were read: the batch, found without reading every observation
            incremental, given, why = plan
            state = _touched_state_or_none(con, given, config)
            if state is None:
                plan = (False, None, f"{why}; {_TOO_MUCH}")
        if state is None:
            export_observations(con, config_dir, exported)
    if state is not None:
        return files, incremental, given, why, state
    observations = read_parquet_frame(exported)
    with warehouse.get_connection() as con:
        if plan is None:
            incremental, given, why = plan_run(con, observations, config)
        else:  # the files say the run is full
            incremental, given, why = False, observations, plan[2]
        del observations  # `given` is all of them or the new batch; the rest is in the warehouse
        if incremental:
            # only the rows of the users the batch touches: memory and time follow the batch, not the state
            state = _touched_state_or_none(con, given, config)
            if state is None:
                incremental, given, why = False, read_parquet_frame(exported), f"{why}; {_TOO_MUCH}"
        if not incremental:
            # a full run keeps the ids with the previous maps; the per-row tables it recomputes
            state = load_state(con, scratch=scratch, per_row_tables=False)
    return files, incremental, given, why, state


def write_input_files(con, files: pl.DataFrame | None, run_id: int, specs: list[RecordSpec]) -> None:
    """Records the raw files behind the state a run published, for the next run's `plan_from_files`; without a
    list of them (`input_files` gave None), none is kept."""
    if files is None:
        con.execute(f'drop table if exists "{HISTORY_SCHEMA}"."{INPUT_FILES}"')
        return
    kept = files.with_columns(run_id=pl.lit(run_id, pl.Int64), mapping=pl.lit(mapping_fingerprint(specs)))
    write_table(con, HISTORY_SCHEMA, INPUT_FILES, kept.cast(INPUT_FILES_SCHEMA))


def write_candidate(con, result, keys: pl.DataFrame) -> dict[str, int]:
    """Leaves a run that is not published where people can look at it, in schema identity_candidate, without
    touching the published tables: every table of the run's state (an incremental run's changes applied to a copy
    of the published tables). Returns the rows of each table."""
    con.execute(f'create schema if not exists "{CANDIDATE_SCHEMA}"')
    if result.changes is None:
        candidate = {**result.state.tables(), PHONE_KEYS: keys}
        with transaction(con):
            for name, frame in candidate.items():
                write_table(con, CANDIDATE_SCHEMA, name, frame)
        return {name: frame.height for name, frame in candidate.items()}
    # the run held only the touched users' rows: copy the published state, then apply the changes to the copy
    with transaction(con):
        for name in [*LATEST_TABLES, "merge_log", "runs", PHONE_KEYS]:
            con.execute(f'create or replace table "{CANDIDATE_SCHEMA}"."{name}" as from "{LATEST_SCHEMA}"."{name}"')
        con.execute(f'create or replace table "{CANDIDATE_SCHEMA}".user_ids as from "{HISTORY_SCHEMA}".user_ids')
    return save_changes(
        con, result.state, result.changes, CANDIDATE_SCHEMA, CANDIDATE_SCHEMA, extra={PHONE_KEYS: keys}
    )


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
    specs = load_record_specs(config_dir / "observations.yml")
    with tempfile.TemporaryDirectory(prefix="oneid-observations-", dir=scratch_dir) as scratch:
        files, incremental, given, why, state = _plan_and_load(warehouse, specs, config, config_dir, Path(scratch))
    phases.lap("read")
    # user ids keyed like the phone hashes: an unkeyed digest of a phone anchor would re-identify the user
    result = run(given, config, state, incremental=incremental, started_at=started, id_key=key)
    del given, state
    # users, blocked_values and rejected_links are whole in either state
    health = graph_health(result.state.tables(), result.run, result.events, max_user_size=config.max_user_size)
    published = health["passed"]
    # An incremental run writes only what it changed (the touched users' rows and the records it re-resolved),
    # to the published tables or, when not published, to a copy of them; a full run writes every table.
    changes = result.changes
    keys = phone_keys(changes.added["id_map"] if changes else result.state.id_map, key)
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
        with warehouse.get_connection() as con:
            crash_point("identity:before_publish")
            if not published:
                rows = write_candidate(con, result, keys)  # the published tables stay as they were
            elif changes is not None:
                rows = save_changes(con, result.state, changes, extra={PHONE_KEYS: keys})
                crash_point("identity:after_publish")
            else:
                load_staged(con, staged)
                crash_point("identity:after_publish")
            if published:
                # after the state: a crash between the two leaves the list of the run before, which the next
                # run then ignores (`plan_from_files` wants the list of the last run)
                write_input_files(con, files, info["run_id"], specs)
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
