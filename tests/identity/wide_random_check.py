"""Wider random checks of the identity engine than the test suite runs: many seeds of overlapping random graphs.

Not collected by pytest (the suite runs a few seeds of each in test_identity_*.py); run it after changing the
engine, the state or explain:

    .venv/bin/python tests/identity/wide_random_check.py --seeds 0:300

Each seed draws a config and graphs from a few dozen tags (`overlapping_graphs`: components span draws) and checks

- `reference`: `resolve` equals the naive reference implementation of the rules;
- `out_of_core`: `resolve_out_of_core` from Parquet parts (key or not, batch size, threads) equals `resolve`;
- `incremental`: an incremental run equals a full run over all observations with the same state, tables and
  logged causes alike, and a rerun with the rows in another order changes no id;
- `saved`: the database path (`load_touched_state`, `save_changes`), two batches, equals the in-memory one;
- `redelivered`: a batch of rows the state already holds changes nothing;
- `explain`: every user's joined links form a spanning tree, and explain finds each identity's user and a chain
  to every other node of it.

It prints the failing seeds of each check with the first error, and exits 1 if any failed. On 2026-12-07 the
first version found three bugs the suite had missed (docs/identity.md, "Stable ids" and "Explain").
"""

import argparse
import random
import sys
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE)]

import duckdb  # noqa: E402
import polars as pl  # noqa: E402
from test_identity_incremental import _assert_saved_as, assert_same, canonical  # noqa: E402
from test_identity_outofcore import _assert_same  # noqa: E402
from test_identity_reference import compare, frame, overlapping_graphs, random_config, reference  # noqa: E402

from identity import resolve  # noqa: E402
from identity.explain import explain  # noqa: E402
from identity.normalize import phone_hashes  # noqa: E402
from identity.outofcore import resolve_out_of_core  # noqa: E402
from identity.resolution import HASH_TYPES, links_frame  # noqa: E402
from identity.state import load_touched_state, run, save_changes, save_state  # noqa: E402

STARTED = datetime(2024, 6, 1, 9, 0)


def check_reference(rng: random.Random, config, rows: list, folder: Path) -> None:
    observations = frame(rows)
    compare(resolve(observations, config), reference(observations, config))


def check_out_of_core(rng: random.Random, config, rows: list, folder: Path) -> None:
    observations = frame(rows)
    key = b"wide-check-key-0123456789" if rng.random() < 0.5 else None
    parts = rng.randint(1, 4)
    size = observations.height // parts + 1
    for part in range(parts):
        observations.slice(part * size, size).write_parquet(folder / f"part-{part}.parquet")
    database = folder / "out_of_core.duckdb"
    result = resolve_out_of_core(
        str(folder / "part-*.parquet"), database, config, id_key=key,
        batch_rows=rng.choice([50, 333, 5000]), threads=rng.choice([1, 2]),
    )
    _assert_same(resolve(observations, config, id_key=key), database, result.stats)


def check_incremental(rng: random.Random, config, rows: list, folder: Path) -> None:
    rng.shuffle(rows)
    cut = int(len(rows) * rng.choice([0.5, 0.8, 0.95]))
    state = run(frame(rows[:cut]), config).state
    full = run(frame(rows), config, state)
    assert_same(run(frame(rows[cut:]), config, state, incremental=True), full)
    again = run(frame(rows[::-1]), config, full.state)
    assert (again.run["new_users"], again.run["merges"], again.run["splits"]) == (0, 0, 0), again.run
    assert canonical(again.state.record_map).equals(canonical(full.state.record_map))


def check_saved(rng: random.Random, config, rows: list, folder: Path) -> None:
    rng.shuffle(rows)
    cut = int(len(rows) * rng.choice([0.6, 0.9, 0.98]))
    more = overlapping_graphs(rng)[: rng.randint(1, 40)]
    database = str(folder / "state.duckdb")
    whole = run(frame(rows[:cut]), config)
    with duckdb.connect(database) as con:
        save_state(con, whole.state)
    for batch_rows in (rows[cut:], more):
        batch = frame(batch_rows)
        whole = run(batch, config, whole.state, incremental=True, started_at=STARTED)
        with duckdb.connect(database) as con:
            part = load_touched_state(con, batch, config, max_share=1.0)
            touched = run(batch, config, part, incremental=True, started_at=STARTED)
            save_changes(con, touched.state, touched.changes)
        assert touched.run == whole.run, (touched.run, whole.run)
        assert touched.resolution.stats == whole.resolution.stats
        assert canonical(touched.events).equals(canonical(whole.events))
        _assert_saved_as(database, whole.state)


def check_redelivered(rng: random.Random, config, rows: list, folder: Path) -> None:
    first = run(frame(rows), config)
    again_rows = rng.sample(rows, max(1, len(rows) // rng.choice([1, 5, 50])))
    again = run(frame(again_rows), config, first.state, incremental=True)
    assert again.events.height == 0, again.events
    for name in ("record_map", "id_map", "users", "rejected_links", "blocked_values"):
        got, want = getattr(again.state, name), getattr(first.state, name)
        assert canonical(got).equals(canonical(want.cast(got.schema))), name


def check_explain(rng: random.Random, config, rows: list, folder: Path) -> None:
    cut = int(len(rows) * 0.7)
    state = run(frame(rows[cut:]), config, run(frame(rows[:cut]), config).state, incremental=True).state
    links = links_frame(state.links)
    joined = links.filter(pl.col("status") == "joined")
    for user_id, group in joined.group_by("user_id"):
        records = group.select("source", "record_id").n_unique()
        nodes = group.select("link_type", "scope", "link_value").n_unique()
        assert group.height == records + nodes - 1, ("not a spanning tree", user_id)
    tables = {**state.tables(), "merge_log": state.merge_log}
    sample = state.id_map.sample(min(40, state.id_map.height), seed=rng.randrange(1 << 30))
    for id_type, scope, value, user_id in sample.select("id_type", "scope", "id_value", "user_id").iter_rows():
        result = explain(tables, id_type, value, scope, config)
        assert result["status"] == "found" and result["user_id"] == user_id, (id_type, value)
        user_nodes = set(joined.filter(pl.col("user_id") == user_id).select("link_type", "scope", "link_value").rows())
        own = links.filter((pl.col("id_type") == id_type) & (pl.col("scope") == scope) & (pl.col("id_value") == value))
        start = own.select("link_type", "scope", "link_value").row(0) if own.height else (id_type, scope, value)
        if not own.height and id_type in HASH_TYPES:
            digest = HASH_TYPES.index(id_type)
            start = next((n for n in user_nodes if n[0] == "phone" and phone_hashes(n[2])[digest] == value), start)
        chained = {tuple(node.split("\t")) for node in result["chains"]}
        assert chained == user_nodes - {start}, (id_type, value, chained ^ (user_nodes - {start}))


CHECKS = {
    "reference": check_reference,
    "out_of_core": check_out_of_core,
    "incremental": check_incremental,
    "saved": check_saved,
    "redelivered": check_redelivered,
    "explain": check_explain,
}


def seed_range(text: str) -> range:
    start, _, stop = text.partition(":")
    return range(int(start), int(stop)) if stop else range(int(start), int(start) + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=seed_range, default=range(0, 100), help="FROM:TO, e.g. 0:300 (0:100)")
    parser.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated, of {', '.join(CHECKS)}")
    args = parser.parse_args(argv)
    failed: dict[str, list[int]] = {}
    for seed in args.seeds:
        for name in args.checks.split(","):
            # the same config and graphs for every check of a seed; each check draws the rest from its own stream
            rng = random.Random(f"{seed}")
            config = random_config(rng)
            rows = overlapping_graphs(rng)
            try:
                with tempfile.TemporaryDirectory(prefix="oneid-wide-") as folder:
                    CHECKS[name](random.Random(f"{seed}/{name}"), config, rows, Path(folder))
            except Exception:
                if name not in failed:
                    print(f"{name}, seed {seed}:\n{traceback.format_exc(limit=6)}", file=sys.stderr)
                failed.setdefault(name, []).append(seed)
    for name in args.checks.split(","):
        passed = len(args.seeds) - len(failed.get(name, []))
        print(f"{name:12s} {passed:5d} seeds passed, failed: {failed.get(name, [])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
