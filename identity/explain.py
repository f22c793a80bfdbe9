"""Why is this value this user? The user holding an identity, everything it holds and where each was seen, the
chain of links from the value to every other identity, the refused and blocked links around it, and its history.

Works on the identity tables (a `Resolution` with `links`, or a state / warehouse), never re-resolves anything.
The same questions as SQL are in docs/identity.md ("Explain").
"""

from __future__ import annotations

from collections import deque

import polars as pl

from identity.config import IdentityConfig
from identity.normalize import BLOCK_REASONS, normalize_observations, phone_hashes
from identity.resolution import HASH_TYPES, links_of_users
from identity.state import HISTORY_SCHEMA, HISTORY_TABLES, LATEST_SCHEMA, LATEST_TABLES, state_exists

ID_KEY = ["id_type", "scope", "id_value"]


def normalize_value(id_type: str, value: str, scope: str = "", config: IdentityConfig | None = None) -> dict:
    row = pl.DataFrame(
        {"source": ["explain"], "record_id": ["explain"], "id_type": [id_type], "scope": [scope], "id_value": [value]}
    )
    return normalize_observations(row, config).row(0, named=True)


def _history(merge_log: pl.DataFrame, user_id: str) -> pl.DataFrame:
    """Events of the user and of every id that was merged or split into it, transitively, oldest first."""
    ids, frontier = {user_id}, {user_id}
    while frontier:
        earlier = set(merge_log.filter(pl.col("new_user_id").is_in(list(frontier)))["old_user_id"].to_list()) - ids
        ids |= earlier
        frontier = earlier
    touching = pl.col("old_user_id").is_in(list(ids)) | pl.col("new_user_id").is_in(list(ids))
    return merge_log.filter(touching).sort("run_id", "event", "old_user_id")


def _chains(links: pl.DataFrame, start: tuple) -> dict:
    """identity node -> path of (record, identity) steps from `start`, over the links that joined sets: they form
    a spanning tree of the user, so each path is the unique chain the greedy union actually used."""
    graph: dict = {}
    for row in links.filter(pl.col("status") == "joined").iter_rows(named=True):
        record = ("record", row["source"], row["record_id"])
        node = ("identity", row["link_type"], row["scope"], row["link_value"])
        graph.setdefault(record, []).append((node, row))
        graph.setdefault(node, []).append((record, row))
    previous = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for there, row in graph.get(here, []):
            if there not in previous:
                previous[there] = (here, row)
                queue.append(there)
    paths = {}
    for node in previous:
        if node[0] != "identity" or node == start:
            continue
        steps, at = [], node
        while previous[at] is not None:
            at, row = previous[at]
            steps.append(row)
        paths[node] = list(reversed(steps))
    return paths


def _start_node(user_links: pl.DataFrame, is_key: pl.Expr, key: dict) -> tuple:
    """The node of the queried identity in its user's link graph: the node its own links link (a hashed phone's
    is the phone it translates to), else the identity itself.

    A hash's own links can all be missing from its user's links, though its user is the phone's: dropped as
    repeats of the plain phone's link on the same record, or on another user's record, where they were refused.
    Its node is then the user's phone it is the digest of."""
    start_row = user_links.filter(is_key)
    if start_row.height:
        return ("identity", start_row["link_type"][0], key["scope"], start_row["link_value"][0])
    if key["id_type"] in HASH_TYPES:
        digest = HASH_TYPES.index(key["id_type"])  # phone_hashes gives (md5, sha256), as HASH_TYPES lists them
        for phone in user_links.filter(pl.col("link_type") == "phone")["link_value"].unique().sort().to_list():
            if phone_hashes(phone)[digest] == key["id_value"]:
                return ("identity", "phone", "", phone)
    return ("identity", key["id_type"], key["scope"], key["id_value"])


def explain(
    tables: dict[str, pl.DataFrame],
    id_type: str,
    value: str,
    scope: str = "",
    config: IdentityConfig | None = None,
) -> dict:
    """Everything about the user holding (id_type, scope, value). `tables` needs observations, id_map,
    record_map, links, rejected_links and blocked_values; merge_log is optional.

    Returns a dict: `query` (the normalized identity), `status` (`found`, `blocked`, `unusable`, `unknown`),
    and when found: `user_id`, `records`, `identities` (each with `seen`: where and when, and `own_record`: false
    on another user's record, where its link was refused), `chains` (identity -> list of link steps), `rejected`,
    `blocked`, `history`.
    """
    norm = normalize_value(id_type, value, scope, config)
    key = {"id_type": norm["id_type"], "scope": norm["scope"], "id_value": norm["id_value"]}
    is_key = pl.all_horizontal([pl.col(name) == value for name, value in key.items()]) if key["id_value"] else None
    result: dict = {"query": key, "raw_value": value}
    observations = tables["observations"]
    if norm["id_value"] is None or norm["unusable_reason"] not in (None, *BLOCK_REASONS):
        result.update(status="unusable", reason=norm["unusable_reason"])
        if norm["unusable_reason"] == "missing_scope":
            # a scoped type asked without its scope: the scopes the value is an identity in, to ask again with
            id_map = tables["id_map"]
            known = id_map.filter((pl.col("id_type") == key["id_type"]) & (pl.col("id_value") == key["id_value"]))
            result["scopes"] = sorted(known["scope"].unique().to_list())
        return result
    blocked = tables["blocked_values"].filter(is_key)
    found = tables["id_map"].filter(is_key)
    if found.height == 0:
        if blocked.height:
            carriers = observations.filter(
                (pl.col("id_type") == key["id_type"])
                & (pl.col("scope") == key["scope"])
                & (pl.col("id_value") == key["id_value"])
            ).select("source", "record_id", "observed_at", "unusable_reason")
            result.update(status="blocked", blocked=blocked.to_dicts(), carriers=carriers.to_dicts())
        else:
            result.update(status="unknown")
        return result

    user_id = found["user_id"].item()
    records = tables["record_map"].filter(pl.col("user_id") == user_id).select("source", "record_id")
    identities = tables["id_map"].filter(pl.col("user_id") == user_id).select(ID_KEY)
    # every record an identity was seen on, the user's own and others' (whose link to it was refused)
    seen = (
        observations.join(identities, on=ID_KEY, how="semi")
        .join(records.with_columns(own_record=pl.lit(True)), on=["source", "record_id"], how="left")
        .with_columns(pl.col("own_record").fill_null(False))
        .select(*ID_KEY, "source", "record_id", "observed_at", "strength", "own_record")
        .sort(*ID_KEY, "observed_at", "source", "record_id", nulls_last=True)
    )
    identity_rows = []
    for ident in identities.sort(ID_KEY).iter_rows(named=True):
        where = seen.filter(
            (pl.col("id_type") == ident["id_type"])
            & (pl.col("scope") == ident["scope"])
            & (pl.col("id_value") == ident["id_value"])
        )
        seen_at = where.select("source", "record_id", "observed_at", "strength", "own_record").to_dicts()
        identity_rows.append({**ident, "seen": seen_at})

    user_links = links_of_users(tables["links"], pl.Series([user_id], dtype=pl.String))
    start = _start_node(user_links, is_key, key)
    chains = {
        f"{node[1]}\t{node[2]}\t{node[3]}": [
            {name: row[name] for name in ("source", "record_id", "id_type", "scope", "id_value", "link_type",
                                           "link_value", "observed_at", "strength")}
            for row in steps
        ]
        for node, steps in sorted(_chains(user_links, start).items())
    }
    rejected = tables["rejected_links"].filter(
        (pl.col("user_id") == user_id) | (pl.col("conflicting_user_id") == user_id)
    )
    blocked_links = observations.join(records, on=["source", "record_id"], how="semi").filter(
        pl.col("unusable_reason").is_in(BLOCK_REASONS)
    )
    merge_log = tables.get("merge_log")
    history = _history(merge_log, user_id) if merge_log is not None and merge_log.height else None
    result.update(
        status="found",
        user_id=user_id,
        # the node the chains start at: the queried identity, or for a hashed phone the phone it is the digest of
        chains_from=dict(zip(ID_KEY, start[1:])),
        records=records.sort("source", "record_id").to_dicts(),
        identities=identity_rows,
        chains=chains,
        rejected=rejected.to_dicts(),
        blocked=blocked_links.select("source", "record_id", *ID_KEY, "raw_value", "unusable_reason").to_dicts(),
        history=history.to_dicts() if history is not None else [],
    )
    return result


def tables_for_value(
    con,
    id_type: str,
    value: str,
    scope: str = "",
    config: IdentityConfig | None = None,
    latest_schema: str | None = None,
    history_schema: str | None = None,
) -> dict[str, pl.DataFrame] | None:
    """What `explain` reads about one value, read from a state database (`identity.state.save_state`'s schemas):
    the value's rows of `id_map` and `blocked_values`; the rows of its user (records, identities, the observations
    on its records and of its identities, its links, the refused links touching it); and the merge log. None if
    the database holds no state. `explain` gives the same on these as on the whole state, which `load_state`
    would read: at 10M links 20 s and 5.3 GB for one phone.
    """
    latest, history = latest_schema or LATEST_SCHEMA, history_schema or HISTORY_SCHEMA
    if not state_exists(con, latest, history):
        return None
    (runs,) = con.execute(f'select count(*) from "{history}"."runs"').fetchall()[0]
    if runs == 0:
        return None
    norm = normalize_value(id_type, value, scope, config)
    key = [norm["id_type"], norm["scope"], norm["id_value"]]
    on_key = "t.id_type = ? and t.scope = ? and t.id_value = ?"

    def rows(table: str, where: str = "false", params: list | None = None) -> pl.DataFrame:
        """The table's rows that `where` keeps, in the table's order, as the whole state holds them."""
        schema = history if table in HISTORY_TABLES else latest
        query = f'select t.* from "{schema}"."{table}" t where {where} order by t.rowid'
        frame = con.sql(query, params=params or None).pl()
        wanted = {**LATEST_TABLES, **HISTORY_TABLES}[table]
        return frame.cast(wanted) if wanted is not None else frame

    tables = {name: rows(name) for name in [*LATEST_TABLES, *HISTORY_TABLES]}  # empty, with their columns
    if norm["id_value"] is None:
        return tables
    if norm["unusable_reason"] == "missing_scope":
        tables["id_map"] = rows("id_map", "t.id_type = ? and t.id_value = ?", [norm["id_type"], norm["id_value"]])
        return tables
    tables["blocked_values"] = rows("blocked_values", on_key, key)
    tables["id_map"] = rows("id_map", on_key, key)
    users = tables["id_map"]["user_id"].to_list()
    if not users:
        # a blocked value's carriers are its observations
        tables["observations"] = rows("observations", on_key, key)
        return tables
    user = users[0]
    # the observations on the user's records, and those of its identities on other records
    observations = con.sql(
        f"""
        select * exclude (_row) from (
            select t.*, t.rowid as _row from "{latest}"."observations" t
            semi join (select source, record_id from "{latest}"."record_map" where user_id = $user) r
                on r.source = t.source and r.record_id = t.record_id
            union
            select t.*, t.rowid as _row from "{latest}"."observations" t
            semi join (select id_type, scope, id_value from "{latest}"."id_map" where user_id = $user) i
                on i.id_type = t.id_type and i.scope = t.scope and i.id_value = t.id_value
        )
        order by _row
        """,
        params={"user": user},
    ).pl()
    tables.update(
        record_map=rows("record_map", "t.user_id = ?", [user]),
        id_map=rows("id_map", "t.user_id = ?", [user]),
        observations=observations,
        links=rows("links", "t.user_id = ?", [user]),
        rejected_links=rows("rejected_links", "? in (t.user_id, t.conflicting_user_id)", [user]),
        merge_log=rows("merge_log", "true"),
    )
    return tables


def _ident(id_type: str, scope: str, value: str) -> str:
    return f"{id_type}:{scope}:{value}" if scope else f"{id_type}:{value}"


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "time unknown"


def render(result: dict) -> str:
    """The explanation as text for a terminal."""
    q = result["query"]
    asked = _ident(q["id_type"], q["scope"], q["id_value"] if q["id_value"] is not None else result["raw_value"])
    lines = []
    if result["status"] == "unusable":
        text = f"{asked}: not an identity ({result['reason']}); it links nothing"
        if result.get("scopes"):
            text += f". It is an identity with --scope {' or --scope '.join(result['scopes'])}"
        return text
    if result["status"] == "unknown":
        return f"{asked}: not seen in this resolution"
    if result["status"] == "blocked":
        reasons = ", ".join(f"{row['reason']} ({row['records']} records)" for row in result["blocked"])
        lines.append(f"{asked}: blocked: {reasons}; it links nothing. Records carrying it:")
        for row in result["carriers"]:
            lines.append(f"  {row['source']}/{row['record_id']}  {_when(row['observed_at'])}")
        return "\n".join(lines)

    lines.append(
        f"{asked} -> user {result['user_id']} "
        f"({len(result['records'])} records, {len(result['identities'])} identities)"
    )
    lines.append("")
    lines.append("Identities (where each was seen):")
    for ident in result["identities"]:
        lines.append(f"  {_ident(ident['id_type'], ident['scope'], ident['id_value'])}")
        for seen in ident["seen"]:
            elsewhere = "" if seen["own_record"] else "  (another user's record: its link was refused)"
            lines.append(
                f"      {seen['source']}/{seen['record_id']}  {_when(seen['observed_at'])}  {seen['strength']}"
                + elsewhere
            )
    lines.append("")
    start = result["chains_from"]
    if (start["id_type"], start["id_value"]) != (q["id_type"], q["id_value"]):
        # a hashed phone links as the phone it is the digest of: its chains pass through that phone's records
        asked += f" (= {_ident(start['id_type'], start['scope'], start['id_value'])})"
    lines.append(f"Chains of links from {asked}:")
    if not result["chains"]:
        lines.append("  (no other identity)")
    for target, steps in result["chains"].items():
        # the path alternates identity - record - identity: one hop per record it passes through
        text = asked
        for enter, leave in zip(steps[0::2], steps[1::2]):
            via = _ident(leave["id_type"], leave["scope"], leave["id_value"])
            if (leave["link_type"], leave["link_value"]) != (leave["id_type"], leave["id_value"]):
                via += f" (= {_ident(leave['link_type'], leave['scope'], leave['link_value'])})"
            times = sorted({_when(enter["observed_at"]), _when(leave["observed_at"])})
            text += f"\n      -- {enter['source']}/{enter['record_id']} [{', '.join(times)}] --> {via}"
        lines.append(f"  to {_ident(*target.split(chr(9), 2))}:\n      {text}")
    lines.append("")
    _section(lines, "Refused links touching the user:", result["rejected"], lambda row: (
        f"{_on_record(row)}: {row['reason']} (record's user {row['user_id']}, "
        f"identity's user {row['conflicting_user_id']})"
    ))
    _section(lines, "Blocked values on its records:", result["blocked"],
             lambda row: f"{_on_record(row)}: {row['unusable_reason']}")
    _section(lines, "History (merges and splits):", result["history"], _history_line)
    return "\n".join(lines)


def _section(lines: list[str], title: str, rows: list[dict], describe) -> None:
    lines.append(title)
    lines.extend([f"  {describe(row)}" for row in rows] or ["  none"])


def _on_record(row: dict) -> str:
    return f"{row['source']}/{row['record_id']} -- {_ident(row['id_type'], row['scope'], row['id_value'])}"


def _history_line(row: dict) -> str:
    cause = ""
    if row["id_value"] is not None:
        cause = f" via {_ident(row['id_type'], row['scope'], row['id_value'])}"
        if row["source"] is not None:
            cause += f" on {row['source']}/{row['record_id']}"
    return f"run {row['run_id']}: {row['event']} {row['old_user_id']} -> {row['new_user_id']} ({row['reason']}{cause})"
