"""resolve() against a deliberately naive implementation of the same rules, on thousands of random small graphs.

The reference uses dicts, sets and Python's sort on the spec's key, with none of resolve()'s machinery
(factorized ids, integer sort keys, linked lists, numba). Both start from normalize_observations(), which has its
own table tests.
"""

import hashlib
import random
from collections import defaultdict

import polars as pl
import pytest

from identity import normalize_observations, resolve
from identity.config import DEFAULT_ID_TYPE_PRIORITY, IdentityConfig

SOURCES = ["crm_members", "mp_logins", "oa_followers", "orders"]


def reference(observations: pl.DataFrame, config: IdentityConfig):
    """(user per record, user per observed identity, rejected links) by the rules, the slow and obvious way."""
    rows = normalize_observations(observations, config).to_dicts()
    records = {(row["source"], row["record_id"]) for row in rows}

    plain_phones = {
        row["id_value"]: row["unusable_reason"] for row in rows if row["id_type"] == "phone" and row["id_value"]
    }
    hash_to_phone = {}
    for phone, reason in plain_phones.items():
        hash_to_phone[("phone_md5", hashlib.md5(phone.encode()).hexdigest())] = (phone, reason)
        hash_to_phone[("phone_sha256", hashlib.sha256(phone.encode()).hexdigest())] = (phone, reason)
    for row in rows:
        row["key"] = (row["id_type"], row["scope"], row["id_value"])
        if row["usable"] and (row["id_type"], row["id_value"]) in hash_to_phone:
            phone, reason = hash_to_phone[(row["id_type"], row["id_value"])]
            row["key"] = ("phone", "", phone)
            row["usable"] = reason is None

    usable = [row for row in rows if row["usable"]]
    keys_of_record = defaultdict(set)
    for row in usable:
        keys_of_record[(row["source"], row["record_id"])].add(row["key"])
    unique = set(config.unique_types)
    shared = set()
    for key in {row["key"] for row in usable if row["key"][0] not in unique}:
        values_per_class = defaultdict(set)
        for held in keys_of_record.values():
            if key in held:
                for other in held:
                    if other[0] in unique:
                        values_per_class[other[:2]].add(other[2])
        if any(len(values) > config.shared_threshold for values in values_per_class.values()):
            shared.add(key)
    usable = [row for row in usable if row["key"] not in shared]

    def ranks(listed, present):
        order = list(listed) + sorted(set(present) - set(listed))
        return {name: index for index, name in enumerate(order)}

    type_rank = ranks(config.id_type_priority, [row["id_type"] for row in rows] + [row["key"][0] for row in rows])
    source_rank = ranks(config.source_priority, [source for source, _ in records])
    usable.sort(
        key=lambda row: (
            row["strength"] == "weak",
            type_rank[row["id_type"]],
            source_rank[row["source"]],
            row["observed_at"] is None,
            row["observed_at"] or 0,
            row["source"],
            row["record_id"],
            row["id_type"],
            row["scope"],
            row["id_value"],
        )
    )

    cluster_of = {("record", record): ("record", record) for record in records}
    members = {cluster: {cluster} for cluster in cluster_of.values()}
    unique_values = {cluster: {} for cluster in members}  # cluster -> {(type, scope): value}
    rejected = []
    done = set()
    for row in usable:
        record, key = ("record", (row["source"], row["record_id"])), ("identity", row["key"])
        if (record, key) in done:
            continue
        done.add((record, key))
        if key not in cluster_of:
            cluster_of[key] = key
            members[key] = {key}
            unique_values[key] = {row["key"][:2]: row["key"][2]} if row["key"][0] in unique else {}
        left, right = cluster_of[record], cluster_of[key]
        if left == right:
            continue
        conflicts = [
            cls for cls, value in unique_values[left].items() if unique_values[right].get(cls, value) != value
        ]
        if conflicts:
            worst = min(conflicts, key=lambda cls: (type_rank[cls[0]], cls))
            rejected.append((row, record, key, worst[0]))
            continue
        for member in members[right]:
            cluster_of[member] = left
        members[left] |= members.pop(right)
        unique_values[left].update(unique_values.pop(right))

    first_seen = {}
    for row in usable:
        seen = first_seen.get(row["key"], "unset")
        if seen == "unset" or (row["observed_at"] is not None and (seen is None or row["observed_at"] < seen)):
            first_seen[row["key"]] = row["observed_at"]
    user = {}
    for cluster, nodes in members.items():
        identities = [node[1] for node in nodes if node[0] == "identity"]
        if identities:
            anchor = min(
                identities,
                key=lambda k: (first_seen[k] is None, first_seen[k] or 0, type_rank[k[0]], k[0], k[1], k[2]),
            )
            text = "\t".join(anchor)
        else:
            (only,) = nodes
            text = f"{only[1][0]}/{only[1][1]}"
        user[cluster] = "u_" + hashlib.sha256(text.encode()).hexdigest()[:16]

    record_users = {record: user[cluster_of[("record", record)]] for record in records}
    identity_users = {
        (row["id_type"], row["scope"], row["id_value"]): user[cluster_of[("identity", row["key"])]] for row in usable
    }
    rejected_rows = {
        (
            row["source"], row["record_id"], row["id_type"], row["scope"], row["id_value"],
            user[cluster_of[record]], user[cluster_of[key]], f"unique_conflict:{cls}",
        )
        for row, record, key, cls in rejected
    }
    return record_users, identity_users, rejected_rows


def random_graph(rng: random.Random, graph: int) -> list[tuple]:
    """A few records sharing identifiers from tiny pools, so merges, conflicts and ties are the common case."""
    tag = f"g{graph:05d}"
    phones = [f"139{graph:05d}{k:03d}" for k in range(rng.randint(1, 4))]
    pools = {
        "unionid": [f"{tag}U{k}" for k in range(rng.randint(1, 4))],
        "openid": [f"{tag}o{k}" for k in range(rng.randint(1, 4))],
        "external_userid": [f"{tag}wm{k}" for k in range(rng.randint(1, 3))],
        "member_id": [f"{tag}M{k}" for k in range(rng.randint(1, 3))],
        "phone": phones + ["13800138000", "+86 " + phones[0], phones[0][:3] + "****" + phones[0][-4:]],
        "email": [f"{tag}e{k}@Mail.cn" for k in range(2)],
        # the hash of a junk phone: as blocked as the phone where the phone is seen in plain
        "phone_md5": [hashlib.md5(p.encode()).hexdigest() for p in phones]
        + [hashlib.md5(f"{tag}x".encode()).hexdigest(), hashlib.md5(b"13800138000").hexdigest()],
        "phone_sha256": [hashlib.sha256(phones[-1].encode()).hexdigest()],
        # non-ASCII values: text order must be code-point order on both sides
        "buyer_account": [f"{tag}nick", f"{tag}买家小王", f"{tag}Ünal"],
    }
    scopes = {
        "openid": ["wxoa", "wxmp"],
        "external_userid": ["corp"],
        "member_id": ["crm_a", "crm_b"],
        "buyer_account": ["taobao", "抖音"],
    }
    weights = {"unionid": 4, "openid": 4, "external_userid": 2, "member_id": 2, "phone": 6, "email": 1,
               "phone_md5": 2, "phone_sha256": 1, "buyer_account": 1}
    types = list(weights)
    times = [None, "2024-01-01 00:00:00", "2024-01-01 00:00:00", "2024-01-02 08:00:00", "2024-03-01 00:00:00"]
    rows = []
    for record in range(rng.randint(1, 9)):
        source = rng.choice(SOURCES)
        when = rng.choice(times)
        for _ in range(rng.randint(1, 4)):
            id_type = rng.choices(types, weights=[weights[t] for t in types])[0]
            scope = rng.choice(scopes.get(id_type, [""]))
            strength = rng.choice(["strong", "strong", "weak", None])
            # an observation's own time sometimes differs from its record's
            observed = when if rng.random() < 0.8 else rng.choice(times)
            rows.append((source, f"{tag}r{record}", id_type, scope, rng.choice(pools[id_type]), observed, strength))
    return rows


def overlapping_graphs(rng: random.Random) -> list[tuple]:
    """Random graphs drawn from a few dozen tags, so a tag's records and values recur in several draws: one record
    gathers identifiers from each, and components span draws (the batches above keep graphs apart)."""
    tags = rng.randint(5, 60)
    return [row for _ in range(rng.randint(20, 120)) for row in random_graph(rng, rng.randrange(tags))]


def random_config(rng: random.Random) -> IdentityConfig:
    priority = list(DEFAULT_ID_TYPE_PRIORITY)
    if rng.random() < 0.3:
        rng.shuffle(priority)
    unique = ["unionid", "external_userid", "member_id"]
    if rng.random() < 0.2:
        unique.append("openid")
    return IdentityConfig(
        shared_threshold=rng.choice([1, 2, 3]),
        unique_types=tuple(unique),
        id_type_priority=tuple(priority),
        source_priority=tuple(rng.sample(SOURCES, rng.randint(0, 2))),
        link_strength={"phone_md5": "weak"} if rng.random() < 0.5 else {},
    )


def frame(rows) -> pl.DataFrame:
    schema = {c: pl.String for c in ["source", "record_id", "id_type", "scope", "id_value", "observed_at", "strength"]}
    return pl.DataFrame(rows, schema=schema, orient="row").with_columns(
        pl.col("observed_at").str.to_datetime(time_unit="us")
    )


def compare(result, expected, graph_of=None):
    record_users, identity_users, rejected_rows = expected
    got_records = {(s, r): u for s, r, u in result.record_map.iter_rows()}
    assert got_records == record_users
    got_identities = {(t, s, v): u for t, s, v, u in result.id_map.iter_rows()}
    assert got_identities == identity_users
    assert set(result.rejected_links.iter_rows()) == rejected_rows
    assert result.rejected_links.height == len(rejected_rows)


def test_batches_of_random_graphs_match_the_reference():
    """2,400 graphs in 12 configs; graphs of one batch share nothing, so each resolves as if alone."""
    rng = random.Random(20240501)
    graphs_checked = 0
    rejected_seen = shared_seen = 0
    for batch in range(12):
        config = random_config(rng)
        rows = [row for graph in range(batch * 200, batch * 200 + 200) for row in random_graph(rng, graph)]
        observations = frame(rows)
        result = resolve(observations, config)
        compare(result, reference(observations, config))
        graphs_checked += 200
        rejected_seen += result.stats["links_rejected"]
        shared_seen += result.stats["values_shared"]
        if batch % 4 == 0:
            slow = resolve(observations, config, engine="python")
            assert slow.record_map.equals(result.record_map)
            assert slow.rejected_links.equals(result.rejected_links)
    assert graphs_checked >= 2000
    # the generator must actually exercise the interesting rules
    assert rejected_seen > 100 and shared_seen > 10


@pytest.mark.parametrize("seed", range(40))
def test_single_random_graphs_match_the_reference(seed):
    """Graphs resolved one at a time too, so batching cannot hide an ordering bug."""
    rng = random.Random(seed)
    config = random_config(rng)
    rows = [row for graph in range(3) for row in random_graph(rng, graph)]
    observations = frame(rows)
    compare(resolve(observations, config), reference(observations, config))


@pytest.mark.parametrize("seed", range(6))
def test_overlapping_random_graphs_match_the_reference(seed):
    rng = random.Random(777_000 + seed)
    config = random_config(rng)
    observations = frame(overlapping_graphs(rng))
    compare(resolve(observations, config), reference(observations, config))


def test_random_graphs_match_the_reference_with_every_string_ranked_through_its_hash(monkeypatch):
    """The random graphs' ids are short, so resolve() would sort them directly; forcing the hash path for every
    string column checks that ranking long ids (real openids, unionids) by hash gives the same result."""
    import identity.resolution as resolution

    monkeypatch.setattr(resolution, "_INLINE_BYTES", 0)
    rng = random.Random(20261127)
    for batch in range(3):
        config = random_config(rng)
        observations = frame([row for graph in range(batch * 200, batch * 200 + 200) for row in random_graph(rng, graph)])
        compare(resolve(observations, config), reference(observations, config))


def test_text_rank_is_the_dense_text_rank_even_when_hashes_collide(monkeypatch):
    from identity.resolution import _text_rank

    rng = random.Random(7)
    words = ["o" + "".join(rng.choice("abcXYZ019_-") for _ in range(rng.randint(13, 30))) for _ in range(300)]
    values = pl.Series([rng.choice(words) for _ in range(5_000)])
    expected = (values.rank("dense") - 1).cast(pl.Int64)
    assert _text_rank(values).to_list() == expected.to_list()
    # a hash that maps everything to one value: the check against the strings must catch it and fall back
    monkeypatch.setattr(pl.Series, "hash", lambda self, seed=0: pl.Series([0] * len(self), dtype=pl.UInt64))
    assert _text_rank(values).to_list() == expected.to_list()


@pytest.mark.parametrize("with_empty_string", [False, True])
def test_text_rank_ranks_a_null_as_the_empty_string(monkeypatch, with_empty_string):
    """Nulls (unusable rows' values) are ranked in place, as '' would be, without a filled copy of the column;
    also when '' itself is there (then filled first), and when a string shares the null's hash."""
    from identity.resolution import _text_rank

    rng = random.Random(11)
    words = ["u" + "".join(rng.choice("abcXYZ019") for _ in range(rng.randint(13, 30))) for _ in range(200)]
    words += [""] if with_empty_string else []
    values = pl.Series([None if rng.random() < 0.1 else rng.choice(words) for _ in range(3_000)], dtype=pl.String)
    expected = (values.fill_null("").rank("dense") - 1).cast(pl.Int64).to_list()
    assert _text_rank(values).to_list() == expected
    # every string hashes like the null: the check must see that a null row's group holds a string
    hash_of = pl.Series.hash
    monkeypatch.setattr(pl.Series, "hash", lambda self, seed=0: hash_of(self.fill_null(words[0]), seed))
    assert _text_rank(values).to_list() == expected


@pytest.mark.parametrize("seed", range(4))
def test_repeated_pairs_are_the_later_occurrences_in_link_order(seed):
    """`_repeated_pairs` finds the rows whose (record, identity) pair came earlier in the order by the given keys,
    rows equal in every key in row order; the same through its packed-integer path and its fallback for ids too
    large to pack."""
    import numpy as np

    from identity.resolution import _repeated_pairs

    rng = np.random.default_rng(seed)
    for n in (0, 1, 2, 50, 2_000):
        rid, iid = rng.integers(0, 40, n), rng.integers(0, 30, n)
        # two keys with many ties, so that the row decides between rows equal in both
        keys = [rng.integers(0, 3, n), rng.integers(0, 4, n)]
        order = sorted(range(n), key=lambda row: (int(keys[0][row]), int(keys[1][row]), row))
        seen, expected = set(), []
        for row in order:
            pair = (int(rid[row]), int(iid[row]))
            if pair in seen:
                expected.append(row)
            seen.add(pair)
        for n_identities in (30, 2**61):  # the second cannot be packed into one int64
            got = _repeated_pairs(rid, iid, keys, n_identities)
            assert sorted(got.tolist()) == sorted(expected)
