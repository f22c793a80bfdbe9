"""Benchmark identity.resolve() at 100k / 1M / 10M links on synthetic observations.

    .venv/bin/python bench/identity.py                 # all sizes
    .venv/bin/python bench/identity.py --sizes 100000 1000000

Each size runs in a fresh process so peak RSS belongs to that size alone. For comparison the same graph (the
usable record-identity links) goes through networkx connected_components (up to 1M links; it is pure Python)
and scipy's csgraph connected_components: plain connectivity, without the uniqueness rule, blocklist or
ordering, so they are a floor, not an equivalent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the `identity` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

import identity  # noqa: E402

NETWORKX_LIMIT = 1_000_000
LINKS_PER_RECORD = 2.3  # what the record mix below yields on average; used to size the input


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def synthetic_observations(n_links: int, seed: int = 7) -> pl.DataFrame:
    """Private-domain-shaped data: people with openids in two apps, unionids (70% bound), phones shared inside
    families, WeCom contacts with typed-in phones, orders with gift receivers, CRM members, an ad partner's md5
    phones, plus junk, masked and front-desk numbers."""
    rng = np.random.default_rng(seed)
    n_records = int(n_links / LINKS_PER_RECORD)
    n_people = max(10, n_records // 3)
    bound = rng.random(n_people) < 0.7
    phone = 13_900_000_000 + np.arange(n_people, dtype=np.int64)
    family = np.flatnonzero(rng.random(n_people) < 0.03)
    phone[family[family > 0]] = phone[family[family > 0] - 1]

    kinds = np.array(["oa_followers", "mp_logins", "wecom_contacts", "orders", "crm_members", "ad_partner"])
    kind = rng.choice(len(kinds), size=n_records, p=[0.2, 0.3, 0.1, 0.25, 0.13, 0.02])
    person = rng.integers(0, n_people, size=n_records)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    seconds = rng.integers(0, 365 * 86400, size=n_records)
    base = pl.DataFrame(
        {
            "rid": np.arange(n_records),
            "kind": kinds[kind],
            "p": person,
            "bound": bound[person],
            "phone": phone[person].astype(str),
            "other_phone": phone[rng.integers(0, n_people, size=n_records)].astype(str),
            "u": rng.random(n_records),
            "observed_at": start + seconds.astype("timedelta64[s]"),
        }
    ).with_columns(
        record_id=pl.col("rid").cast(pl.String),
        observed_at=pl.col("observed_at").cast(pl.Datetime("us")),
    )
    # junk and unusable phones, and two front-desk numbers typed into many CRM rows
    base = base.with_columns(
        phone=pl.when(pl.col("u") < 0.004)
        .then(pl.lit("13800138000"))
        .when(pl.col("u") < 0.01)
        .then(pl.col("phone").str.slice(0, 3) + "****" + pl.col("phone").str.slice(7))
        .when((pl.col("kind") == "crm_members") & (pl.col("u") > 0.995))
        .then(pl.lit("13700000001"))
        .when(pl.col("u") > 0.98)
        .then("+86 " + pl.col("phone"))
        .otherwise(pl.col("phone"))
    )

    def emit(kind, id_type, scope, value, when=True, strength="strong"):
        part = base.filter((pl.col("kind") == kind) & when)
        return part.select(
            pl.col("kind").alias("source"),
            "record_id",
            pl.lit(id_type).alias("id_type"),
            pl.lit(scope).alias("scope"),
            value.alias("id_value"),
            "observed_at",
            pl.lit(strength).alias("strength"),
        )

    p = pl.col("p").cast(pl.String)
    bound_ = pl.col("bound")
    parts = [
        emit("oa_followers", "openid", "wxoa0000000demo01", "oOA" + p),
        emit("oa_followers", "unionid", "", "oUN" + p, bound_),
        emit("mp_logins", "openid", "wxmp0000000demo01", "oMP" + p),
        emit("mp_logins", "unionid", "", "oUN" + p, bound_),
        emit("mp_logins", "phone", "", pl.col("phone"), pl.col("u") < 0.5),
        emit("wecom_contacts", "external_userid", "wwcorp00000demo01", "wm" + p),
        emit("wecom_contacts", "unionid", "", "oUN" + p, bound_),
        emit("wecom_contacts", "phone", "", pl.col("phone"), pl.col("u") < 0.4, "weak"),
        emit("orders", "openid", "wxmp0000000demo01", "oMP" + p),
        emit("orders", "phone", "", pl.col("phone")),
        emit(
            "orders", "phone", "",
            pl.when(pl.col("u") < 0.8).then(pl.col("phone")).otherwise(pl.col("other_phone")),
            strength="weak",
        ),
        emit("crm_members", "member_id", "demo_crm", "M" + p),
        emit("crm_members", "phone", "", pl.col("phone")),
    ]
    ad = base.filter(pl.col("kind") == "ad_partner")
    md5 = [hashlib.md5(value.encode()).hexdigest() for value in ad["phone"].to_list()]
    parts.append(
        ad.select(
            pl.col("kind").alias("source"),
            "record_id",
            pl.lit("phone_md5").alias("id_type"),
            pl.lit("").alias("scope"),
            pl.Series("id_value", md5, dtype=pl.String),
            "observed_at",
            pl.lit("strong").alias("strength"),
        )
    )
    return pl.concat(parts)


def run_one(n_links: int) -> dict:
    # load the compiled kernel from numba's cache before timing anything
    identity.resolve(synthetic_observations(1000, seed=1))
    observations = synthetic_observations(n_links)
    rss_before = _rss_mb()
    clock, cpu = time.perf_counter(), time.process_time()
    resolution = identity.resolve(observations)
    seconds, cpu_seconds = time.perf_counter() - clock, time.process_time() - cpu
    result = {
        "links_requested": n_links,
        "observations": observations.height,
        "links": resolution.stats["links"],
        "records": resolution.stats["records"],
        "identities": resolution.stats["identities"],
        "users": resolution.stats["users"],
        "links_rejected": resolution.stats["links_rejected"],
        "values_shared": resolution.stats["values_shared"],
        "resolve_seconds": round(seconds, 3),
        "resolve_cpu_seconds": round(cpu_seconds, 3),
        "phase_seconds": {name: round(value, 3) for name, value in resolution.timings.items()},
        "kernel_links_per_second": round(resolution.stats["links"] / max(resolution.timings["link"], 1e-9)),
        "rss_before_resolve_mb": round(rss_before),
        "peak_rss_mb": round(_rss_mb()),
    }

    usable = resolution.observations.filter("usable").select(
        pl.concat_str(["source", "record_id"], separator="/").alias("a"),
        pl.concat_str(["id_type", "scope", "id_value"], separator="\t").alias("b"),
    )
    del resolution, observations
    nodes = pl.concat([usable["a"], usable["b"]]).unique()
    index = pl.DataFrame({"node": nodes}).with_row_index("i")
    edges = usable.join(index.rename({"node": "a", "i": "ia"}), on="a").join(
        index.rename({"node": "b", "i": "ib"}), on="b"
    )
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    clock = time.perf_counter()
    n = index.height
    graph = coo_matrix(
        (np.ones(edges.height, dtype=np.int8), (edges["ia"].to_numpy(), edges["ib"].to_numpy())), shape=(n, n)
    ).tocsr()
    components, _ = scipy_components(graph, directed=False)
    result["scipy_seconds"] = round(time.perf_counter() - clock, 3)
    result["scipy_components"] = int(components)

    if n_links <= NETWORKX_LIMIT:
        import networkx as nx

        clock = time.perf_counter()
        g = nx.Graph()
        g.add_edges_from(zip(edges["ia"].to_list(), edges["ib"].to_list()))
        components = sum(1 for _ in nx.connected_components(g))
        result["networkx_seconds"] = round(time.perf_counter() - clock, 3)
        result["networkx_components"] = components
    result["peak_rss_with_baselines_mb"] = round(_rss_mb())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return 0
    import os

    print(
        f"engine: {'numba' if identity.engine.HAVE_NUMBA else 'python'}; polars {pl.__version__}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    for size in args.sizes:
        completed = subprocess.run(
            [sys.executable, __file__, "--one", str(size)], capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            print(f"{size:>11,} links: failed\n{completed.stderr}", file=sys.stderr)
            return 1
        r = json.loads(completed.stdout.strip().splitlines()[-1])
        phases = ", ".join(f"{name} {value:.2f}s" for name, value in r["phase_seconds"].items())
        networkx = f"{r['networkx_seconds']:.2f}s" if "networkx_seconds" in r else "skipped"
        print(
            f"{r['links']:>11,} links ({r['records']:,} records, {r['identities']:,} identities -> "
            f"{r['users']:,} users, {r['links_rejected']:,} rejected)\n"
            f"    resolve {r['resolve_seconds']:.2f}s wall, {r['resolve_cpu_seconds']:.2f}s CPU [{phases}]; "
            f"greedy kernel "
            f"{r['kernel_links_per_second'] / 1e6:.1f}M links/s\n"
            f"    peak RSS {r['peak_rss_mb']:,} MB (input alone {r['rss_before_resolve_mb']:,} MB)\n"
            f"    plain connected components: scipy {r['scipy_seconds']:.2f}s, networkx {networkx}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
