"""`oneid`: resolve observations from a file (optionally keeping state between runs), explain a value's user,
or score a resolution against ground truth."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import sys
from pathlib import Path

import duckdb
import polars as pl

from identity.config import KNOWN_TYPES, ConfigError, load_config
from identity.connection import check_database_path, connect, copy_to_csv
from identity.evaluate import pairwise_scores
from identity.explain import explain, render, tables_for_value
from identity.files import read_table, unread_sheets
from identity.normalize import (
    OUTPUT_COLUMNS,
    ObservationError,
    normalize_observations,
    split_observations,
    unfamiliar_id_types,
)
from identity.resolution import resolve


def _read(path: str, command: str) -> pl.DataFrame:
    """`read_table`, saying on stderr which sheets of a workbook it left unread: rows there would be missing
    without a word."""
    frame = read_table(path)
    unread = unread_sheets(path)
    if unread:
        print(
            f"oneid {command}: note: {path} has {len(unread) + 1} sheets and only the first is read; not "
            f"{', '.join(repr(name) for name in unread[:5])}. An export split across sheets? Save it as one CSV.",
            file=sys.stderr,
        )
    return frame


def _has_header(path: str) -> bool:
    """Whether the file's rows are counted after a header line (CSV, Excel), as the messages count them."""
    return not path.lower().endswith(".parquet")


def _read_observations(path: str, config, quarantine: str | None = None) -> pl.DataFrame:
    """The observations to resolve; with `quarantine`, the rows that break the contract are written there
    instead (with the file, row, column and reason), and the count said."""
    observations = _read(path, "resolve")
    if quarantine:
        observations, quarantined = split_observations(observations)
        # rows numbered as the error messages number them: from 1, after the header line of a CSV
        quarantined.select(pl.lit(path).alias("file"), pl.col("row") + 1, pl.exclude("row")).write_csv(quarantine)
        _print_quarantined(quarantined.group_by("column").len(), quarantine, _has_header(path))
    if "id_type" in observations.columns:
        unfamiliar = unfamiliar_id_types(observations, config)
        if unfamiliar:
            listed = ", ".join(f"{id_type} ({rows:,} rows)" for id_type, rows in list(unfamiliar.items())[:5])
            print(
                f"oneid resolve: note: id_type {listed} is not a type the rules know ({', '.join(KNOWN_TYPES)}) "
                "nor one the config names: its values link as they are, unnormalized. A misspelt phone or "
                "openid? Otherwise name it in id_type_priority to say it is meant.",
                file=sys.stderr,
            )
    return observations


def _resolve(args: argparse.Namespace) -> int:
    if not args.out and not args.out_dir:
        print("oneid resolve: give --out and/or --out-dir", file=sys.stderr)
        return 2
    config = load_config(args.config)
    if args.incremental and not args.state:
        print("oneid resolve: --incremental needs --state", file=sys.stderr)
        return 2
    for database in (args.state, args.out_of_core):
        if database:
            check_database_path(database)
    for written in (args.out, args.quarantine):
        if written:
            # made before the run, which can take minutes and save a state, rather than failed on after it
            Path(written).parent.mkdir(parents=True, exist_ok=True)
    if args.out_of_core:
        return _resolve_out_of_core(args, config)
    out_written = False
    if args.state:
        from identity.state import copy_record_map, load_state, load_touched_state, run, save_changes, save_state

        observations = _read_observations(args.observations, config, args.quarantine)
        with connect(args.state) as con:
            if args.incremental:
                # only the rows of the users the batch touches leave the database, and only the changes go back
                previous = load_touched_state(con, observations, config)
            else:
                # the maps (not the per-row tables) are what a full run needs to keep the ids
                previous = load_state(con, per_row_tables=False)
            if args.incremental and previous is None:
                print("oneid resolve: --incremental needs a state written by a full run first", file=sys.stderr)
                return 2
            result = run(observations, config, previous, incremental=args.incremental, engine=args.engine)
            if result.changes is not None:
                save_changes(con, result.state, result.changes)
                # the outputs cover every record, and the run held only the touched ones
                if not args.out_dir:
                    # DuckDB writes the record map straight from the state: 0.5 s at 4.3M records, against
                    # 1.2 s and the whole maps in memory to load it and write it from polars
                    copy_record_map(con, args.out)
                    out_written = True
                    resolution = result.resolution
                else:
                    whole = load_state(con, per_row_tables=True)
                    resolution = dataclasses.replace(
                        result.resolution,
                        **{name: getattr(whole, name) for name in ("record_map", "id_map", "rejected_links", "users")},
                        observations=whole.observations.select(OUTPUT_COLUMNS),
                    )
            else:
                save_state(con, result.state)
                resolution = result.resolution
        info = result.run
        print(
            f"run {info['run_id']} ({info['mode']}): {info['resolved_records']:,} records resolved; "
            f"{info['new_users']:,} new users, {info['merges']:,} merges, {info['splits']:,} splits"
        )
    else:
        observations = _read_observations(args.observations, config, args.quarantine)
        resolution = resolve(observations, config, engine=args.engine)
    if args.out and not out_written:
        resolution.record_map.write_csv(args.out)
    if args.out_dir:
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in resolution.tables().items():
            frame.write_csv(out_dir / f"{name}.csv")
        (out_dir / "stats.json").write_text(json.dumps(resolution.stats, indent=2) + "\n", encoding="utf-8")
    _print_stats(resolution.stats)
    if args.incremental:
        # the run's tables hold the touched records' older observations too: the batch's own are counted
        _print_unusable(_unusable_counts(normalize_observations(observations, config)), " in the batch")
    else:
        _print_unusable(_unusable_counts(resolution.observations), "")
    return 0


def _print_quarantined(counts: pl.DataFrame, path: str, header: bool) -> None:
    """`counts`: column, len of the rows set aside."""
    rows = int(counts["len"].sum()) if counts.height else 0
    counts = counts.sort(["len", "column"], descending=[True, False])
    listed = ", ".join(f"{n:,} {column}" for column, n in counts.iter_rows())
    where = " (rows counted after the header)" if header and rows else ""
    print(f"rows set aside for breaking the input contract: {rows:,}" + (f" (by column: {listed})" if rows else "")
          + f", in {path}{where}")


def _unusable_counts(normalized: pl.DataFrame) -> pl.DataFrame:
    return normalized.filter(pl.col("unusable_reason").is_not_null()).group_by("unusable_reason").len()


def _print_unusable(counts: pl.DataFrame, which: str) -> None:
    """How many observations link nothing, by reason (`counts`: unusable_reason, len): what a messy export cost,
    said by every run."""
    counts = counts.sort(["len", "unusable_reason"], descending=[True, False])
    if counts.height:
        listed = ", ".join(f"{rows:,} {reason}" for reason, rows in counts.iter_rows())
        print(f"observations that link nothing{which}: {counts['len'].sum():,} ({listed}; see their unusable_reason)")


def _resolve_out_of_core(args: argparse.Namespace, config) -> int:
    from identity.outofcore import OUTPUT_TABLES, QUARANTINE_TABLE, copy_table, resolve_out_of_core

    if args.state:
        print("oneid resolve: --out-of-core keeps no state; give --state or --out-of-core, not both", file=sys.stderr)
        return 2
    if args.observations.lower().endswith((".xlsx", ".xls")):
        print("oneid resolve: --out-of-core reads Parquet or UTF-8 CSV (a file or a pattern such as "
              "'exports/*.parquet'), not Excel", file=sys.stderr)
        return 2
    result = resolve_out_of_core(
        args.observations, args.out_of_core, config, engine=args.engine, memory_limit=args.memory_limit,
        quarantine=bool(args.quarantine),
    )
    if args.out:
        copy_table(args.out_of_core, "record_map", args.out)
    if args.out_dir:
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in OUTPUT_TABLES:
            copy_table(args.out_of_core, name, out_dir / f"{name}.csv")
        (out_dir / "stats.json").write_text(json.dumps(result.stats, indent=2) + "\n", encoding="utf-8")
    _print_stats(result.stats)
    with connect(args.out_of_core, read_only=True) as con:
        # counted in the database: at 100M observations the rows themselves would be millions
        counts = con.sql(
            "select unusable_reason, count(*) as len from observations where unusable_reason is not null group by 1"
        ).pl()
        if args.quarantine:
            # numbered from 1, as in memory and in the error messages
            copy_to_csv(con, f'(select * replace ("row" + 1 as "row") from {QUARANTINE_TABLE})', args.quarantine)
            quarantined = con.sql(f'select "column", count(*) as len from {QUARANTINE_TABLE} group by 1').pl()
            _print_quarantined(quarantined, args.quarantine, _has_header(args.observations))
    _print_unusable(counts, "")
    print(f"tables {', '.join(OUTPUT_TABLES)} are in {args.out_of_core}")
    return 0


def _print_stats(stats: dict) -> None:
    print(
        f"{stats['records']:,} records, {stats['identities']:,} identities -> {stats['users']:,} users "
        f"(largest {stats['largest_user_size']:,} records); {stats['links_rejected']:,} links rejected, "
        f"{stats['values_blocked']:,} values blocked, {stats['values_shared']:,} shared"
    )


def _explain(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if bool(args.state) == bool(args.observations):
        print("oneid explain: give exactly one of --state and --observations", file=sys.stderr)
        return 2
    if args.state:

        if not Path(args.state).exists():
            raise FileNotFoundError(args.state)
        check_database_path(args.state)
        # only the value's user is read, not the whole state
        with connect(args.state, read_only=True) as con:
            tables = tables_for_value(con, args.id_type, args.value, args.scope or "", config)
        if tables is None:
            print(f"oneid explain: {args.state} holds no identity state", file=sys.stderr)
            return 1
    else:
        resolution = resolve(_read(args.observations, "explain"), config, links=True)
        tables = {**resolution.tables(), "links": resolution.links}
    result = explain(tables, args.id_type, args.value, args.scope or "", config)
    if args.json:
        print(json.dumps(result, default=str, ensure_ascii=False, indent=2))
    else:
        print(render(result))
    return 0 if result["status"] == "found" else 3


def _evaluate(args: argparse.Namespace) -> int:
    scores = pairwise_scores(_read(args.predicted, "evaluate"), _read(args.truth, "evaluate"))
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"precision {scores['precision']:.4f}")
        print(f"recall    {scores['recall']:.4f}")
        print(f"f1        {scores['f1']:.4f}")
        print(
            f"pairs: {scores['correct_pairs']:,} correct of {scores['predicted_pairs']:,} predicted, "
            f"{scores['true_pairs']:,} true; {scores['records']:,} records in both"
        )
    return 0


def _version() -> str:
    try:
        return importlib.metadata.version("oneid")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oneid", description="One user id per person across private-domain data.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    run = commands.add_parser("resolve", help="resolve observations to one user id per record")
    run.add_argument(
        "--observations",
        required=True,
        help="CSV (UTF-8 or GB18030, .gz ok), Parquet or Excel with the columns source, record_id, id_type, "
        "scope, id_value, observed_at (and strength)",
    )
    run.add_argument("--out", help="write the record map (source,record_id,user_id) here, CSV")
    run.add_argument("--out-dir", help="also write every identity table (CSV) and stats.json to this folder")
    run.add_argument("--config", help="identity.yml with the rules (default: built-in defaults)")
    run.add_argument(
        "--state",
        help="DuckDB file keeping ids between runs (created if missing): ids stay stable, merges/splits are logged",
    )
    run.add_argument(
        "--incremental",
        action="store_true",
        help="--observations is a new batch added to the state's observations (only touched users are redone)",
    )
    run.add_argument(
        "--out-of-core",
        metavar="DUCKDB_FILE",
        help="resolve inside this DuckDB file, for observations larger than memory (Parquet, or CSV in UTF-8); the "
        "identity tables are left in it (same results as in memory; no --state)",
    )
    run.add_argument(
        "--quarantine",
        metavar="CSV",
        help="set the rows that break the input contract (empty source, record_id or id_type; an observed_at that "
        "is not an ISO time; a strength not strong/weak) aside in this CSV, with their row, column and reason, "
        "and resolve the others; without it the first such row stops the run",
    )
    run.add_argument("--memory-limit", help="with --out-of-core: DuckDB's memory limit, e.g. 6GB (it spills beyond)")
    run.add_argument("--engine", choices=["auto", "numba", "python"], default="auto", help=argparse.SUPPRESS)
    run.set_defaults(handler=_resolve)

    why = commands.add_parser("explain", help="why an identifier belongs to its user: identities, chains, history")
    why.add_argument("--id-type", required=True, help="phone, unionid, openid, member_id, ...")
    why.add_argument("--value", required=True, help="the identifier, as exported (it is normalized first)")
    why.add_argument("--scope", help="appid / corp id / CRM name for scoped types")
    why.add_argument("--state", help="a state file or the warehouse (identity + identity_state schemas)")
    why.add_argument("--observations", help="or resolve these observations (CSV, Parquet or Excel) afresh")
    why.add_argument("--config", help="identity.yml (normalization and rules)")
    why.add_argument("--json", action="store_true", help="print the explanation as JSON")
    why.set_defaults(handler=_explain)

    score = commands.add_parser("evaluate", help="pairwise precision/recall of a record map against truth")
    score.add_argument("--predicted", required=True, help="CSV: source,record_id,user_id")
    score.add_argument("--truth", required=True, help="CSV (.gz ok): source,record_id,person_id")
    score.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    score.set_defaults(handler=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        observations = getattr(args, "observations", None)
        if isinstance(error, ObservationError) and error.source is None and observations:
            # rows of the file the command read, counted as the file counts them
            error = error.in_source(observations, header=_has_header(observations))
        hint = ""
        if isinstance(error, ObservationError) and error.row is not None and args.command == "resolve":
            hint = " (--quarantine FILE sets such rows aside and resolves the others)"
        print(f"oneid {args.command}: {error}{hint}", file=sys.stderr)
        return 1
    except duckdb.IOException as error:
        # DuckDB lets one process open a file for writing and then no other, not even to read it
        if "lock" not in str(error):
            raise
        database = getattr(args, "state", None) or getattr(args, "out_of_core", None)
        print(
            f"oneid {args.command}: {database} is open in another process (a pipeline run writing the warehouse?); "
            f"try again when it has finished. DuckDB: {str(error).splitlines()[0]}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
