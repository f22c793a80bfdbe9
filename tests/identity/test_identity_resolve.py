import hashlib
import os
import subprocess
import sys

import polars as pl
import pytest

from identity import load_config, resolve
from identity.config import config_from_dict

PHONE = "13912345678"
FAMILY_PHONE = "13698765432"


def users(resolution) -> dict[tuple[str, str], str]:
    return {(source, record_id): user for source, record_id, user in resolution.record_map.iter_rows()}


def partition(resolution) -> set[frozenset]:
    groups: dict[str, set] = {}
    for source, record_id, user in resolution.record_map.iter_rows():
        groups.setdefault(user, set()).add((source, record_id))
    return {frozenset(group) for group in groups.values()}


def check_invariants(resolution, observations_in: pl.DataFrame) -> None:
    """Properties every resolution must have, whatever the input."""
    record_map = resolution.record_map
    expected = observations_in.select(pl.col("source").cast(pl.String), pl.col("record_id").cast(pl.String)).unique()
    assert record_map.height == expected.height
    assert record_map.select("source", "record_id").is_duplicated().sum() == 0
    assert record_map["user_id"].str.contains(r"^u_[0-9a-f]{16}$").all()
    # every usable observation's identity is in id_map, under the user of its record
    usable = resolution.observations.filter("usable").join(record_map, on=["source", "record_id"])
    joined = usable.join(
        resolution.id_map.rename({"user_id": "identity_user"}), on=["id_type", "scope", "id_value"], how="left"
    )
    assert joined["identity_user"].null_count() == 0
    rejected_keys = resolution.rejected_links.select("source", "record_id", "id_type", "scope", "id_value")
    accepted = joined.join(rejected_keys, on=["source", "record_id", "id_type", "scope", "id_value"], how="anti")
    assert (accepted["user_id"] == accepted["identity_user"]).all()
    # no user holds two values of a unique (type, scope)
    unique_rows = resolution.id_map.filter(pl.col("id_type").is_in(["unionid", "external_userid", "member_id"]))
    assert unique_rows.group_by("user_id", "id_type", "scope").len()["len"].max() in (None, 1)
    rejected = resolution.rejected_links
    assert (rejected["user_id"] != rejected["conflicting_user_id"]).all()
    assert resolution.stats["records"] == record_map.height
    assert resolution.stats["users"] == record_map["user_id"].n_unique()


def test_same_openid_string_under_two_appids_is_two_users(make_observations):
    obs = make_observations(
        [
            ("oa_followers", "1", "openid", "wxoa_app", "oSame123", "2024-01-01 10:00:00"),
            ("mp_logins", "2", "openid", "wxmp_app", "oSame123", "2024-01-01 10:00:00"),
            ("mp_logins", "3", "openid", "wxmp_app", "oSame123", "2024-01-02 10:00:00"),
        ]
    )
    result = resolve(obs, load_config())
    check_invariants(result, obs)
    assert partition(result) == {
        frozenset({("oa_followers", "1")}),
        frozenset({("mp_logins", "2"), ("mp_logins", "3")}),
    }
    assert result.id_map.height == 2


def test_transitive_chain_is_one_user(make_observations):
    # openid A <-> unionid <-> openid B <-> phone <-> CRM member
    obs = make_observations(
        [
            ("oa_followers", "wxoa/oA", "openid", "wxoa", "oA", "2024-01-01 09:00:00"),
            ("oa_followers", "wxoa/oA", "unionid", "", "oU1", "2024-01-01 09:00:00"),
            ("mp_logins", "L1", "openid", "wxmp", "oB", "2024-02-01 09:00:00"),
            ("mp_logins", "L1", "unionid", "", "oU1", "2024-02-01 09:00:00"),
            ("mp_logins", "L2", "openid", "wxmp", "oB", "2024-02-03 09:00:00"),
            ("mp_logins", "L2", "phone", "", "+86 139 1234 5678", "2024-02-03 09:00:00"),
            ("crm_members", "M7", "member_id", "demo_crm", "M7", "2024-03-01 09:00:00"),
            ("crm_members", "M7", "phone", "", PHONE, "2024-03-01 09:00:00"),
        ]
    )
    result = resolve(obs, load_config())
    check_invariants(result, obs)
    assert len(partition(result)) == 1
    assert result.stats["users"] == 1
    assert result.stats["identities"] == 5
    assert result.stats["users_by_identity_count"] == {5: 1}
    # the anchor is the earliest identity: openid oA and unionid oU1 tie on time, unionid has priority
    expected = "u_" + hashlib.sha256("unionid\t\toU1".encode()).hexdigest()[:16]
    assert set(result.record_map["user_id"]) == {expected}


@pytest.mark.parametrize("family_first", [True, False])
def test_family_phone_never_merges_two_unionids(make_observations, family_first):
    mother = [
        ("mp_logins", "m1", "unionid", "", "oU_mother", "2024-01-01 10:00:00"),
        ("mp_logins", "m1", "phone", "", FAMILY_PHONE, "2024-01-01 10:00:00"),
    ]
    son = [
        ("mp_logins", "s1", "unionid", "", "oU_son", "2024-01-05 10:00:00"),
        ("mp_logins", "s1", "phone", "", FAMILY_PHONE, "2024-01-05 10:00:00"),
    ]
    order_for_the_family = [("orders", "o1", "phone", "", FAMILY_PHONE, "2023-12-01 10:00:00")]
    rows = (son + mother if family_first else mother + son) + order_for_the_family
    if family_first:
        # make the son's phone link the earliest, so time order cannot be what saves us
        rows[1] = ("mp_logins", "s1", "phone", "", FAMILY_PHONE, "2023-01-01 10:00:00")
    obs = make_observations(rows)
    result = resolve(obs, load_config())
    check_invariants(result, obs)
    mapping = users(result)
    assert mapping[("mp_logins", "m1")] != mapping[("mp_logins", "s1")]
    assert result.stats["links_rejected"] == 1
    rejected = result.rejected_links.row(0, named=True)
    assert rejected["reason"] == "unique_conflict:unionid"
    assert rejected["id_type"] == "phone" and rejected["id_value"] == FAMILY_PHONE
    # whichever person the phone went with, the refused record keeps its own user
    assert rejected["user_id"] == mapping[(rejected["source"], rejected["record_id"])]
    assert rejected["conflicting_user_id"] == mapping[("orders", "o1")]


def test_unique_types_are_per_scope(make_observations):
    # one person, a member of two CRMs: two member_ids, different scopes, no conflict
    obs = make_observations(
        [
            ("crm_a", "1", "member_id", "crm_a", "A1", "2024-01-01"),
            ("crm_a", "1", "phone", "", PHONE, "2024-01-01"),
            ("crm_b", "1", "member_id", "crm_b", "B1", "2024-01-02"),
            ("crm_b", "1", "phone", "", PHONE, "2024-01-02"),
            ("crm_b", "2", "member_id", "crm_b", "B2", "2024-01-03"),
            ("crm_b", "2", "phone", "", PHONE, "2024-01-03"),
        ]
    )
    result = resolve(obs, load_config())
    check_invariants(result, obs)
    mapping = users(result)
    assert mapping[("crm_a", "1")] == mapping[("crm_b", "1")] != mapping[("crm_b", "2")]
    assert result.rejected_links["reason"].to_list() == ["unique_conflict:member_id"]


def test_strong_links_beat_weak_ones(make_observations):
    # a gift order's receiver phone (weak) must not pull the buyer away from the receiver's own account
    obs = make_observations(
        [
            ("orders", "o1", "unionid", "", "oU_buyer", "2024-01-01", "strong"),
            ("orders", "o1", "phone", "", PHONE, "2024-01-01", "weak"),
            ("mp_logins", "l1", "unionid", "", "oU_friend", "2024-06-01", "strong"),
            ("mp_logins", "l1", "phone", "", PHONE, "2024-06-01", "strong"),
        ],
        strength=True,
    )
    result = resolve(obs, load_config())
    check_invariants(result, obs)
    rejected = result.rejected_links.row(0, named=True)
    assert (rejected["source"], rejected["record_id"]) == ("orders", "o1")
    assert result.id_map.filter(pl.col("id_type") == "phone")["user_id"][0] == users(result)[("mp_logins", "l1")]


def test_blocked_values_link_nothing_but_records_keep_users(make_observations):
    config = config_from_dict({"blocklist": {"phone": {"values": ["13911110000"]}}})
    obs = make_observations(
        [
            ("orders", str(i), "phone", "", value, "2024-01-01")
            for i, value in enumerate(
                ["13800138000", "13800138000", "null", "13911110000", "13911110000", "138****0000"]
            )
        ]
    )
    result = resolve(obs, config)
    check_invariants(result, obs)
    assert result.record_map.height == 6
    assert result.stats["users"] == 6
    assert result.id_map.height == 0
    blocked = {(row["id_value"], row["reason"]): row["records"] for row in result.blocked_values.iter_rows(named=True)}
    assert blocked == {("13800138000", "junk"): 2, ("null", "junk"): 1, ("13911110000", "blocklist"): 2}
    assert result.stats["values_blocked"] == 3
    assert result.stats["users_by_identity_count"] == {0: 6}


def test_shared_phone_links_nothing(make_observations):
    # a front-desk phone typed into the WeCom remarks of 5 different contacts
    rows = []
    for i in range(5):
        rows.append(("wecom_contacts", f"wm{i}/staff", "external_userid", "corp", f"wm{i}", "2024-01-01"))
        rows.append(("wecom_contacts", f"wm{i}/staff", "phone", "", PHONE, "2024-01-01"))
    rows.append(("orders", "o1", "phone", "", PHONE, "2024-01-02"))
    obs = make_observations(rows)
    result = resolve(obs, load_config())
    check_invariants(result, obs)
    assert result.stats["users"] == 6
    assert result.stats["values_shared"] == 1
    assert result.blocked_values.rows() == [("phone", "", PHONE, "shared", 6)]
    assert result.stats["links_rejected"] == 0
    # at the threshold (3 values) the phone is not shared; the uniqueness rule keeps the people apart instead
    obs_three = obs.filter(~pl.col("record_id").is_in(["wm3/staff", "wm4/staff"]))
    result = resolve(obs_three, load_config())
    assert result.stats["values_shared"] == 0
    assert result.stats["users"] == 3
    assert result.stats["links_rejected"] == 2


def test_hashed_phone_meets_plain_phone(make_observations):
    md5 = hashlib.md5(PHONE.encode()).hexdigest()
    sha = hashlib.sha256(PHONE.encode()).hexdigest()
    other_md5 = hashlib.md5(b"13512345678").hexdigest()
    obs = make_observations(
        [
            ("crm_members", "M1", "phone", "", PHONE, "2024-01-01"),
            ("ad_partner", "a1", "phone_md5", "", md5.upper(), "2024-02-01"),
            ("ad_partner", "a2", "phone_sha256", "", sha, "2024-02-01"),
            # hashes nobody has in plain still link records carrying the same hash
            ("ad_partner", "a3", "phone_md5", "", other_md5, "2024-02-01"),
            ("ad_partner", "a4", "phone_md5", "", other_md5, "2024-02-02"),
        ]
    )
    result = resolve(obs, load_config())
    check_invariants(result, obs)
    assert partition(result) == {
        frozenset({("crm_members", "M1"), ("ad_partner", "a1"), ("ad_partner", "a2")}),
        frozenset({("ad_partner", "a3"), ("ad_partner", "a4")}),
    }
    assert result.stats["identities"] == 2  # the phone (with its two hashes as aliases) and the lone md5
    id_map = {(t, v): u for t, _, v, u in result.id_map.iter_rows()}
    assert id_map[("phone_md5", md5)] == id_map[("phone", PHONE)] == id_map[("phone_sha256", sha)]


def test_hash_of_a_blocked_phone_is_blocked(make_observations):
    config = config_from_dict({"blocklist": {"phone": {"patterns": [r"139\d{8}"]}}})
    md5 = hashlib.md5(PHONE.encode()).hexdigest()
    obs = make_observations(
        [
            ("crm_members", "M1", "phone", "", PHONE, "2024-01-01"),
            ("ad_partner", "a1", "phone_md5", "", md5, "2024-02-01"),
            ("ad_partner", "a2", "phone_md5", "", md5, "2024-02-01"),
        ]
    )
    result = resolve(obs, config)
    assert result.stats["users"] == 3
    assert set(result.blocked_values["reason"]) == {"blocklist_pattern"}


def test_records_without_any_usable_identifier_get_their_own_user(make_observations):
    obs = make_observations(
        [
            ("orders", "o1", "phone", "", None, None),
            ("orders", "o2", "phone", "", "##cipher", None),
            ("orders", "o2", "openid", "", "oNoScope", None),
        ]
    )
    result = resolve(obs, load_config())
    check_invariants(result, obs)
    mapping = users(result)
    assert mapping[("orders", "o1")] == "u_" + hashlib.sha256(b"orders/o1").hexdigest()[:16]
    assert len(set(mapping.values())) == 2
    assert result.blocked_values.height == 0


def test_one_record_with_two_unionids_keeps_the_first(make_observations):
    obs = make_observations(
        [
            ("oa", "r1", "unionid", "", "oU_b", "2024-01-02"),
            ("oa", "r1", "unionid", "", "oU_a", "2024-01-01"),
        ]
    )
    result = resolve(obs, load_config())
    check_invariants(result, obs)
    rejected = result.rejected_links.row(0, named=True)
    assert rejected["id_value"] == "oU_b"  # the later observation loses
    # the refused unionid is still an identity, held by a user with no records
    assert result.id_map.height == 2
    assert result.stats["users"] == 1


def test_source_priority_decides_between_equal_links(make_observations):
    rows = [
        ("crm_members", "M1", "member_id", "crm", "M1", "2024-01-01"),
        ("crm_members", "M1", "phone", "", PHONE, "2024-01-01"),
        ("zz_shop", "M2", "member_id", "crm", "M2", "2024-01-01"),
        ("zz_shop", "M2", "phone", "", PHONE, "2024-01-01"),
    ]
    obs = make_observations(rows)
    winner = lambda config: resolve(obs, config).id_map.filter(pl.col("id_type") == "phone")["user_id"][0]  # noqa: E731
    default = resolve(obs, load_config())
    assert winner(load_config()) == users(default)[("crm_members", "M1")]  # alphabetical
    preferred = config_from_dict({"source_priority": ["zz_shop"]})
    assert winner(preferred) == users(resolve(obs, preferred))[("zz_shop", "M2")]


def test_user_ids_do_not_depend_on_row_order(make_observations):
    rows = []
    for person in range(60):
        rows.append(("oa", f"f{person}", "openid", "wxoa", f"oA{person}", f"2024-01-{person % 28 + 1:02d}"))
        rows.append(("oa", f"f{person}", "unionid", "", f"oU{person}", f"2024-01-{person % 28 + 1:02d}"))
        rows.append(("mp", f"l{person}", "unionid", "", f"oU{person}", None))
        rows.append(("mp", f"l{person}", "phone", "", f"139{person % 45:08d}", None))
        rows.append(("crm", f"m{person}", "member_id", "crm", f"M{person % 50}", "2024-02-01"))
        rows.append(("crm", f"m{person}", "phone", "", f"139{person % 45:08d}", "2024-02-01"))
    rows.append(("crm", "junk", "phone", "", "13800138000", None))
    obs = make_observations(rows)
    baseline = resolve(obs, load_config())
    check_invariants(baseline, obs)
    assert baseline.stats["links_rejected"] > 0
    for seed in range(5):
        shuffled = resolve(obs.sample(fraction=1.0, shuffle=True, seed=seed), load_config())
        for name in ("record_map", "id_map", "rejected_links", "blocked_values"):
            assert shuffled.tables()[name].equals(baseline.tables()[name]), name
        assert shuffled.stats == baseline.stats
        assert shuffled.observations.sort(pl.all()).equals(baseline.observations.sort(pl.all()))


def test_python_and_numba_engines_agree(make_observations):
    rows = [
        ("s", f"r{i}", kind, scope, value, None)
        for i in range(200)
        for kind, scope, value in [
            ("unionid", "", f"u{i % 37}"),
            ("phone", "", f"1391234{i % 53:04d}"),
            ("member_id", "crm", f"m{i % 41}"),
        ]
    ]
    obs = make_observations(rows)
    fast = resolve(obs, load_config(), engine="auto")
    slow = resolve(obs, load_config(), engine="python")
    for name, table in fast.tables().items():
        assert table.equals(slow.tables()[name]), name


def test_runs_without_numba():
    """ONEID_ENGINE=python stands in for an install without numba: the import-time fallback must work."""
    script = (
        "import polars as pl, identity, identity.engine as engine\n"
        "assert not engine.HAVE_NUMBA\n"
        "obs = pl.DataFrame({'source': ['a', 'b'], 'record_id': ['1', '2'], 'id_type': ['unionid'] * 2,"
        " 'scope': ['', ''], 'id_value': ['oU', 'oU'], 'observed_at': [None, None]})\n"
        "assert identity.resolve(obs).stats['users'] == 1\n"
    )
    env = {**os.environ, "ONEID_ENGINE": "python"}
    completed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr


def test_empty_input():
    empty = pl.DataFrame(
        schema={column: pl.String for column in ["source", "record_id", "id_type", "scope", "id_value"]}
        | {"observed_at": pl.Datetime("us")}
    )
    result = resolve(empty)
    assert result.record_map.height == 0
    assert result.stats["users"] == 0
    assert result.stats["largest_user_size"] == 0
