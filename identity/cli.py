"""`oneid`: resolve observations from a file, or score a resolution against ground truth.

Subcommands are independent parsers, so later ones (explain, incremental runs with --state) slot in beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

from identity.config import ConfigError, load_config
from identity.evaluate import pairwise_scores
from identity.resolution import resolve


def read_table(path: str | Path) -> pl.DataFrame:
    """CSV (optionally .gz) or Parquet. CSV columns are read as text: record ids like `000123` must survive."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema=False)


def _resolve(args: argparse.Namespace) -> int:
    if not args.out and not args.out_dir:
        print("oneid resolve: give --out and/or --out-dir", file=sys.stderr)
        return 2
    config = load_config(args.config)
    resolution = resolve(read_table(args.observations), config, engine=args.engine)
    if args.out:
        resolution.record_map.write_csv(args.out)
    if args.out_dir:
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in resolution.tables().items():
            frame.write_csv(out_dir / f"{name}.csv")
        (out_dir / "stats.json").write_text(json.dumps(resolution.stats, indent=2) + "\n", encoding="utf-8")
    stats = resolution.stats
    print(
        f"{stats['records']:,} records, {stats['identities']:,} identities -> {stats['users']:,} users "
        f"(largest {stats['largest_user_size']:,} records); {stats['links_rejected']:,} links rejected, "
        f"{stats['values_blocked']:,} values blocked, {stats['values_shared']:,} shared"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    scores = pairwise_scores(read_table(args.predicted), read_table(args.truth))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oneid", description="One user id per person across private-domain data.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    run = commands.add_parser("resolve", help="resolve observations to one user id per record")
    run.add_argument(
        "--observations",
        required=True,
        help="CSV/Parquet: source,record_id,id_type,scope,id_value,observed_at[,strength]",
    )
    run.add_argument("--out", help="write the record map (source,record_id,user_id) here, CSV")
    run.add_argument("--out-dir", help="also write every identity table (CSV) and stats.json to this folder")
    run.add_argument("--config", help="identity.yml with the rules (default: built-in defaults)")
    run.add_argument("--engine", choices=["auto", "numba", "python"], default="auto", help=argparse.SUPPRESS)
    run.set_defaults(handler=_resolve)

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
        print(f"oneid {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
