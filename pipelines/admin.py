"""`oneid-warehouse`: privacy operations on the warehouse (docs/privacy.md).

    forget    delete a person everywhere and tombstone their identifiers (pipelines/forget.py), then rebuild
    audience  export MD5/SHA-256 phone hashes of a segment for an ad platform: explicit, never by default
    hmac      keyed hashes of a list of phones, to match against marts.dim_user_phones.phone_hmac

Nothing printed or logged here carries an identifier value: counts only.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import polars as pl

import identity
from identity.connection import connect
from identity.privacy import (
    MissingKeyError,
    ad_platform_hash,
    demo_key_notice,
    hmac_key,
    identity_hmac,
    spreadsheet_safe,
)
from pipelines.runlock import WarehouseBusy, WarehouseLock, WarehouseNotWritable
from pipelines.settings import Settings

SEGMENTS = ("all", "prospect", "new", "active", "silent", "churned")


def write_csv(path: Path, header: list[str], rows) -> int:
    """CSV for people who open it in Excel/WPS: every cell neutralized against formula injection."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(h) for h in header])
        for row in rows:
            writer.writerow([spreadsheet_safe(cell) for cell in row])
            count += 1
    return count


def _key() -> bytes:
    key, is_demo = hmac_key()
    if is_demo:
        print(f"NOTE: {demo_key_notice()}", file=sys.stderr)
    return key


def read_requests(args: argparse.Namespace) -> pl.DataFrame:
    """The identifiers to forget: --value (repeatable) with --id-type/--scope, or a CSV id_type,scope,value."""
    frames = []
    if args.value:
        if not args.id_type:
            raise ValueError("--value needs --id-type")
        frames.append(pl.DataFrame({"id_type": args.id_type, "scope": args.scope or "", "value": args.value}))
    if args.file:
        table = pl.read_csv(args.file, infer_schema=False)
        missing = {"id_type", "value"} - set(table.columns)
        if missing:
            raise ValueError(f"{args.file}: needs columns id_type, value (and scope for openid/member_id)")
        if "scope" not in table.columns:
            table = table.with_columns(scope=pl.lit(""))
        frames.append(table.select("id_type", "scope", "value"))
    if not frames:
        raise ValueError("give --value or --file")
    return pl.concat(frames).with_columns(pl.col("scope").fill_null(""))


def _forget(args: argparse.Namespace) -> int:
    from pipelines.forget import forget
    from pipelines.observations import load_record_specs

    settings = Settings.from_env()
    key = _key()
    given = read_requests(args)
    if not settings.database.exists():
        raise FileNotFoundError(f"no warehouse at {settings.database}")
    with WarehouseLock(settings.database):
        with connect(str(settings.database)) as con:
            report = forget(
                con,
                given,
                load_record_specs(settings.config_dir / "observations.yml"),
                identity.load_config(settings.config_dir / "identity.yml"),
                key,
                whole_user=args.whole_user,
            )
    print("oneid-warehouse forget:")
    print("\n".join("  " + line for line in report.lines()))
    if args.no_rebuild:
        print("identity tables and marts still hold the person: run the pipeline now (oneid_full_run)")
        return 0
    from pipelines.demo import run_pipeline

    print("rebuilding identity tables and marts without the person ...")
    if not run_pipeline():
        print("the rebuild failed: the raw rows are gone and tombstoned; rerun the pipeline", file=sys.stderr)
        return 1
    print("done: identity tables and marts rebuilt")
    return 0


def _audience(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    with connect(str(settings.database), read_only=True) as con:
        stages = {row[0] for row in con.sql("select distinct lifecycle_stage from marts.dim_users").fetchall()}
        if args.segment != "all" and args.segment not in stages:
            raise ValueError(f"segment {args.segment!r} has nobody; segments: {', '.join(sorted(map(str, stages)))}")
        phones = con.execute(
            "select distinct ids.id_value from identity.id_map as ids "
            "join marts.dim_users as users on users.user_id = ids.user_id "
            "where ids.id_type = 'phone' and (? = 'all' or users.lifecycle_stage = ?) order by 1",
            [args.segment, args.segment],
        ).fetchall()
    hashes = sorted(ad_platform_hash(phone, args.hash) for (phone,) in phones)
    count = write_csv(Path(args.out), [f"phone_{args.hash}"], ([h] for h in hashes))
    print(f"oneid-warehouse audience: {count} {args.hash} hashes of segment {args.segment} written to {args.out}")
    return 0


def _hmac(args: argparse.Namespace) -> int:
    key = _key()
    config = identity.load_config(Settings.from_env().config_dir / "identity.yml")
    values = [line.strip() for line in Path(args.phones).read_text(encoding="utf-8").splitlines() if line.strip()]
    frame = identity.normalize_observations(
        pl.DataFrame({"source": "hmac", "record_id": [str(i) for i in range(len(values))], "id_type": "phone",
                      "scope": "", "id_value": values}),
        config,
    )
    rows = [[identity_hmac(key, "phone", "", v)] if v else [""] for v in frame["id_value"].to_list()]
    count = write_csv(Path(args.out), ["phone_hmac"], rows)
    print(f"oneid-warehouse hmac: {count} keyed hashes written to {args.out} (empty where not a mobile number)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oneid-warehouse", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    forget = commands.add_parser("forget", help="delete a person everywhere, tombstone their identifiers, rebuild")
    forget.add_argument("--id-type", choices=["phone", "openid", "unionid", "member_id", "external_userid", "email",
                                              "buyer_account"])
    forget.add_argument("--scope", help="appid for openid, CRM name for member_id, corp id for external_userid")
    forget.add_argument("--value", action="append", help="an identifier (repeatable); prefer --file: argv is "
                        "visible to other users of the machine")
    forget.add_argument("--file", help="CSV with columns id_type,scope,value: every identifier of the request")
    forget.add_argument("--whole-user", action="store_true",
                        help="delete the whole unified user, also records the person only shares a user with")
    forget.add_argument("--no-rebuild", action="store_true", help="do not rerun the pipeline afterwards")
    forget.set_defaults(handler=_forget)

    audience = commands.add_parser("audience", help="MD5/SHA-256 phone hashes of a segment, for an ad platform")
    audience.add_argument("--segment", required=True, choices=SEGMENTS, help="lifecycle stage, or all")
    audience.add_argument("--hash", required=True, choices=["md5", "sha256"])
    audience.add_argument("--out", required=True, help="CSV file to write")
    audience.set_defaults(handler=_audience)

    keyed = commands.add_parser("hmac", help="HMAC-SHA256 of phones (one per line), to match dim_user_phones")
    keyed.add_argument("--phones", required=True)
    keyed.add_argument("--out", required=True)
    keyed.set_defaults(handler=_hmac)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (MissingKeyError, WarehouseBusy, WarehouseNotWritable, ValueError, FileNotFoundError) as error:
        print(f"oneid-warehouse {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
