"""`oneid-sample`: write a simulated brand's exports and their ground truth."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from datetime import date

from .simulate import DEFAULT_ACTIVITY, DEFAULT_END, DEFAULT_REFERRAL_RATE, DEFAULT_START, MAX_ACTIVITY, generate
from .noise import NoiseRates


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {value!r}") from exc


def _rate(value: str) -> float:
    try:
        x = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from exc
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate must be in [0, 1], got {value}")
    return x


def _activity(value: str) -> float:
    try:
        x = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from exc
    if not 0.0 < x <= MAX_ACTIVITY:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= {MAX_ACTIVITY:g} (1 is the typical brand), "
                                         f"got {value}")
    return x


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-") + "-rate"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oneid-sample",
        description="Generate a simulated private-domain brand: landing exports (docs/data-contracts.md section 1) "
                    "plus truth/records.csv.gz. Same arguments, same bytes. All data is fake.",
    )
    p.add_argument("--users", type=int, required=True, metavar="N",
                   help="number of simulated persons (made for 1k to 10M)")
    p.add_argument("--seed", type=int, required=True, metavar="S",
                   help="random seed; the output depends only on the arguments")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: gets landing/, truth/ and manifest.json")
    p.add_argument("--start", type=_date, default=DEFAULT_START, metavar="YYYY-MM-DD",
                   help="first day of the simulated period (%(default)s)")
    p.add_argument("--end", type=_date, default=DEFAULT_END, metavar="YYYY-MM-DD",
                   help="last day of the simulated period (%(default)s)")
    p.add_argument("--referral-rate", type=_rate, default=DEFAULT_REFERRAL_RATE, metavar="RATE",
                   help="per person: joined as the invitee of an earlier person (%(default)s)")
    p.add_argument("--activity", type=_activity, default=DEFAULT_ACTIVITY, metavar="X",
                   help="multiplies the mean number of repeat events per person: mini-program logins after the "
                        "first and orders after a buyer's first, with their logins and refunds (%(default)s; "
                        "4.25 makes about 10 source rows per person instead of 5)")
    g = p.add_argument_group("noise rates (each in [0, 1])")
    defaults = NoiseRates()
    for f, text in NoiseRates.help_texts().items():
        g.add_argument(flag_name(f), dest=f, type=_rate, default=getattr(defaults, f), metavar="RATE",
                       help=f"{text} (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.users < 1:
        print("oneid-sample: --users must be >= 1", file=sys.stderr)
        return 2
    if args.end < args.start:
        print("oneid-sample: --end is before --start", file=sys.stderr)
        return 2
    try:
        noise = NoiseRates(**{f.name: getattr(args, f.name) for f in fields(NoiseRates)})
    except ValueError as exc:
        print(f"oneid-sample: {exc}", file=sys.stderr)
        return 2

    t0 = time.monotonic()

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\r{done:,}/{total:,} persons  {time.monotonic() - t0:.1f}s", end="", file=sys.stderr, flush=True)

    try:
        manifest = generate(args.out, users=args.users, seed=args.seed, start=args.start, end=args.end, noise=noise,
                            referral_rate=args.referral_rate, activity=args.activity, progress=progress)
    except FileExistsError as exc:
        print(f"\noneid-sample: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(file=sys.stderr)
        for path, info in manifest["files"].items():
            print(f"{info['rows']:>12,} rows  {info['bytes']:>14,} bytes  {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
