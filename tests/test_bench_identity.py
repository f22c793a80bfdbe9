"""bench/identity.py generates sets above 10M links in parts: the parts must be other people and records, so
that together they form one larger brand rather than the same one repeated."""

import os

from tests.bench_scripts import load_bench

bench = load_bench("identity")


def test_parts_hold_other_records_people_and_phones():
    first, second = (bench.synthetic_observations(20_000, part=part) for part in (0, 1))
    assert first.equals(bench.synthetic_observations(20_000))  # part 0 is the set generated before parts existed
    for id_type in ("unionid", "openid", "phone", "member_id"):
        values = [set(frame.filter(frame["id_type"] == id_type)["id_value"]) for frame in (first, second)]
        shared = values[0] & values[1]
        # only the junk and front-desk numbers every part types in are seen in both
        assert shared <= {"13800138000", "13700000001"}, (id_type, sorted(shared)[:5])
    assert not set(first["record_id"]) & set(second["record_id"])


def test_a_folder_of_parts_is_read_as_one_pattern(tmp_path):
    (tmp_path / "parts").mkdir()
    assert bench._parquet(str(tmp_path / "parts")) == f"{tmp_path / 'parts'}{os.sep}*.parquet"
    assert bench._parquet(str(tmp_path / "one.parquet")) == str(tmp_path / "one.parquet")


def test_goal_ratios_are_not_rounded_up_to_the_goal():
    summary = bench._goal_summary({"floor": 1.15, "engine": 11.63, "networkx": 57.60})
    assert "10.11x the floor" in summary
    assert "4.95x faster than networkx" in summary
    assert bench._goal_summary({"floor": 1.0}) == ""


def test_stopwatch_tells_waiting_from_working_and_counts_new_pages():
    import time

    watch = bench._Stopwatch()
    time.sleep(0.2)
    waited = watch.figures()
    assert waited["seconds"] >= 0.2
    assert waited["cpu_seconds"] < 0.1

    watch = bench._Stopwatch()
    block = bench.np.ones(64 * 2**20 // 8)  # 64 MB: above glibc's largest mmap threshold, so new pages
    taken = watch.figures()
    assert block.sum() == block.size
    assert taken["page_faults"] >= 32  # at least one fault per 2 MB huge page, 16,384 with 4 KB pages
    assert taken["system_seconds"] <= taken["cpu_seconds"] <= taken["seconds"] + 0.05


def test_each_noise_is_scored_on_its_own_brand_even_in_one_folder(tmp_path):
    """Both accuracy runs of the bench get the same working folder: the second brand must not be ingested beside
    the first (which scored adversarial noise at precision 0.33, recall 0.16 instead of about 0.95 and 0.91)."""
    alone = bench.accuracy(300, 3, "adversarial", tmp_path / "alone")
    bench.accuracy(300, 3, "default", tmp_path / "shared")
    after_default = bench.accuracy(300, 3, "adversarial", tmp_path / "shared")
    again = bench.accuracy(300, 3, "adversarial", tmp_path / "shared")
    for result in (after_default, again):
        assert {key: result[key] for key in ("precision", "recall", "records", "users")} == {
            key: alone[key] for key in ("precision", "recall", "records", "users")
        }
    assert alone["precision"] > 0.8 and alone["recall"] > 0.8
