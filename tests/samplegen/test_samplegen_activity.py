"""`activity` scales the repeat events per person and nothing else; 1 is exactly the brand without it.

The invariants of the other test files run at activity 2.5 too (the `sample5k` fixture is made at both).
"""

import json

import pytest
from samplegen_landing import read_landing, read_persons, read_truth
from test_samplegen_determinism import _tree

from samplegen import generate
from samplegen.cli import main

MAIN = "20251231"
USERS, SEED = 2000, 20251123


def test_activity_one_is_the_default(tmp_path):
    # The committed sample pins the default's bytes (test_committed_sample_is_reproducible); asking for 1 must give
    # those same bytes, through the API and the CLI alike.
    generate(tmp_path / "default", users=1000, seed=42)
    generate(tmp_path / "api", users=1000, seed=42, activity=1.0)
    assert main(["--users", "1000", "--seed", "42", "--out", str(tmp_path / "cli"), "--quiet", "--activity", "1"]) == 0
    default = _tree(tmp_path / "default")
    assert _tree(tmp_path / "api") == default
    assert _tree(tmp_path / "cli") == default
    assert json.loads(default["manifest.json"])["activity"] == 1.0


def _counts(root):
    """Rows of the main exports and who left them: (logins, mini-program orders, Taobao orders, mp users,
    mp buyers, Taobao buyers)."""
    L, truth = read_landing(root), read_truth(root)
    mp = [r for f, r in L.mp_orders if MAIN in f]
    tb = [r for f, r in L.tb_orders if MAIN in f]
    users = {truth["mp_logins", r["log_id"]] for r in L.mp_logins}
    mp_buyers = {truth["orders", f"miniprogram_shop/{r['order_id']}"] for r in mp}
    tb_buyers = {truth["orders", f"taobao/{r['订单编号']}"] for r in tb}
    return len(L.mp_logins), len(mp), len(tb), len(users), len(mp_buyers), len(tb_buyers)


def test_activity_scales_logins_and_orders(tmp_path):
    generate(tmp_path / "one", users=USERS, seed=SEED)
    m = generate(tmp_path / "busy", users=USERS, seed=SEED, activity=2.5)
    assert m["activity"] == 2.5
    logins1, mp1, tb1, users1, mpb1, tbb1 = _counts(tmp_path / "one")
    logins2, mp2, tb2, users2, mpb2, tbb2 = _counts(tmp_path / "busy")

    # The persons are the same: who uses the mini-program and who buys does not change, only how often.
    p1, p2 = read_persons(tmp_path / "one"), read_persons(tmp_path / "busy")
    assert p1.keys() == p2.keys()
    for pid in p1:  # (a mini-program entry's first login gets another log id among more logins)
        assert {k: v for k, v in p1[pid].items() if k != "entry_record"} == \
               {k: v for k, v in p2[pid].items() if k != "entry_record"}
    assert (users1, mpb1, tbb1) == (users2, mpb2, tbb2)

    # A login row is a first login, a registration session, an order's login or an extra one; only the last two
    # depend on activity, so the gain in logins beyond the orders' is the extra logins' gain: 1.5 times
    # (1/0.45 - 1) per mini-program user on average.
    gained = (logins2 - mp2) - (logins1 - mp1)
    expected = users1 * (1 / 0.45 - 1) * 1.5
    assert 0.8 * expected <= gained <= 1.25 * expected, (gained, expected)
    assert logins2 > 1.5 * logins1

    # Orders after a buyer's first, per buyer: about 2.5 times as many (a little more, as the shorter gaps drop
    # fewer of them at the end of the window).
    for shop, (o1, b1, o2, b2) in {"miniprogram": (mp1, mpb1, mp2, mpb2), "taobao": (tb1, tbb1, tb2, tbb2)}.items():
        ratio = ((o2 - b2) / b2) / ((o1 - b1) / b1)
        assert 2.1 <= ratio <= 3.3, (shop, ratio)
        assert o2 > 1.4 * o1, shop


def test_low_activity_keeps_a_first_order(tmp_path):
    generate(tmp_path, users=1000, seed=3, activity=0.25)
    _, mp, tb, _, mpb, tbb = _counts(tmp_path)
    assert mpb > 0 and tbb > 0  # buyers still buy once, a few of them again
    assert mp < 1.2 * mpb and tb < 1.2 * tbb


@pytest.mark.parametrize("activity", [0, -1, 20.5, float("nan")])
def test_generate_rejects_activity(tmp_path, activity):
    with pytest.raises(ValueError, match="activity"):
        generate(tmp_path, users=10, seed=1, activity=activity)
    assert not (tmp_path / "landing").exists()


def test_cli_activity_reaches_the_manifest(tmp_path):
    assert main(["--users", "500", "--seed", "2", "--out", str(tmp_path), "--quiet", "--activity", "3"]) == 0
    assert json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))["activity"] == 3.0
