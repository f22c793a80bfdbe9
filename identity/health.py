"""Graph health of a resolution: how big users are, who the largest are, what was blocked, refused, merged, split.

Plain polars over the identity tables, so the Dagster check, the CLI and a notebook read the same numbers.
"""

from __future__ import annotations

import re

import polars as pl

# Metadata and check results are shown in the UI to everyone: an anchor that is a phone is masked there.
_MOBILE_IN_TEXT = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")

# user sizes in records, bucketed: (label, smallest, largest)
SIZE_BUCKETS = (
    ("1", 1, 1),
    ("2", 2, 2),
    ("3-5", 3, 5),
    ("6-10", 6, 10),
    ("11-50", 11, 50),
    ("51-100", 51, 100),
    ("101-1,000", 101, 1000),
    ("1,001-10,000", 1001, 10_000),
    (">10,000", 10_001, None),
)


def graph_health(
    tables: dict[str, pl.DataFrame],
    run: dict | None = None,
    events: pl.DataFrame | None = None,
    max_user_size: int | None = None,
    top: int = 10,
) -> dict:
    """Health figures from `users` (records, identities per user), `blocked_values`, `rejected_links`, and this
    run's merge-log `events`. `passed` is false when the largest user holds more than `max_user_size` records."""
    users = tables["users"].filter(pl.col("records") > 0)
    sizes = users["records"]
    buckets = []
    for label, low, high in SIZE_BUCKETS:
        inside = sizes >= low if high is None else (sizes >= low) & (sizes <= high)
        count = int(inside.sum())
        buckets.append({"records": label, "users": count, "records_total": int(sizes.filter(inside).sum() or 0)})
    largest = (
        users.sort(["records", "identities", "user_id"], descending=[True, True, False])
        .head(top)
        .select("user_id", "records", "identities", "anchor")
    )
    per_user = users.group_by("identities").len().sort("identities")
    blocked = tables["blocked_values"].group_by("reason").agg(
        pl.len().alias("values"), pl.col("records").sum().alias("records")
    ).sort("reason")
    rejected = tables["rejected_links"].group_by("reason").len().sort("reason")
    largest_size = int(sizes.max() or 0)
    events = events if events is not None else pl.DataFrame(schema={"event": pl.String})
    return {
        "users": users.height,
        "records": int(sizes.sum() or 0),
        "largest_user_size": largest_size,
        "max_user_size": max_user_size,
        "passed": max_user_size is None or largest_size <= max_user_size,
        "size_distribution": buckets,
        "largest_users": largest.to_dicts(),
        "users_by_identity_count": {int(k): int(v) for k, v in per_user.iter_rows()},
        "mean_identities_per_user": round(float(users["identities"].mean() or 0), 3),
        "blocked_values": {
            row["reason"]: {"values": row["values"], "records": row["records"]} for row in blocked.to_dicts()
        },
        "rejected_links": {reason: int(count) for reason, count in rejected.iter_rows()},
        "merges": int((events["event"] == "merge").sum()),
        "splits": int((events["event"] == "split").sum()),
        "run": run,
    }


def _masked(text: str) -> str:
    return _MOBILE_IN_TEXT.sub(r"\1****\2", text)


def markdown(health: dict) -> dict[str, str]:
    """Markdown tables for materialization metadata and check results."""
    sizes = ["| records per user | users | records |", "|---:|---:|---:|"]
    sizes += [f"| {b['records']} | {b['users']:,} | {b['records_total']:,} |" for b in health["size_distribution"]]
    largest = ["| user_id | records | identities | anchor |", "|---|---:|---:|---|"]
    largest += [
        f"| {u['user_id']} | {u['records']:,} | {u['identities']:,} | {_masked(u['anchor'].replace(chr(9), ' '))} |"
        for u in health["largest_users"]
    ]
    identities = ["| identities per user | users |", "|---:|---:|"]
    identities += [f"| {k} | {v:,} |" for k, v in health["users_by_identity_count"].items()]
    return {
        "size_distribution": "\n".join(sizes),
        "largest_users": "\n".join(largest),
        "identities_per_user": "\n".join(identities),
    }
