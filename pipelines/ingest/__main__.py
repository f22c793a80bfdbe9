"""``python -m pipelines.ingest --landing DIR --db FILE``: load a landing folder without Dagster."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from identity.connection import connect

from .catalog import CANONICAL_SOURCES
from .config import ConfigError, load_config
from .load import ingest_source


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.ingest", description=__doc__)
    ap.add_argument("--landing", required=True, type=Path, help="landing folder")
    ap.add_argument("--db", required=True, help="DuckDB database file")
    ap.add_argument("--config", default=Path("config"), type=Path, help="folder with sources.yml and layouts.yml")
    ap.add_argument("--source", action="append", choices=CANONICAL_SOURCES, help="only these raw tables (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = ap.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    con = connect(args.db)
    try:
        reports = [ingest_source(con, s, args.landing, config) for s in (args.source or config.sources)]
    finally:
        con.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], ensure_ascii=False, indent=2))
    else:
        for r in reports:
            print(r.summary())
    return 1 if any(r.files_rejected for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
