"""Same arguments, same bytes; and the committed data/sample is exactly what its documented command makes."""

from pathlib import Path

from samplegen import generate
from samplegen.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
SAMPLE_USERS, SAMPLE_SEED = 2000, 20251123  # as in docs/sample-data.md and `make sample`


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    a = generate(tmp_path / "a", users=1000, seed=42)
    b = generate(tmp_path / "b", users=1000, seed=42)
    assert a == b
    ta, tb = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert ta.keys() == tb.keys()
    assert len(ta) == 13  # 10 landing files, 2 truth files, the manifest
    for name in ta:
        assert ta[name] == tb[name], name


def test_different_seed_different_bytes(tmp_path):
    generate(tmp_path / "a", users=1000, seed=42)
    generate(tmp_path / "b", users=1000, seed=43)
    ta, tb = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert ta.keys() == tb.keys()
    for name in ta:
        if name != "manifest.json":
            assert ta[name] != tb[name], name


def test_gzip_header_has_no_time_or_name(tmp_path):
    generate(tmp_path, users=1000, seed=1)
    head = (tmp_path / "truth" / "records.csv.gz").read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] == 0  # FLG: no file name, no comment
    assert head[4:8] == b"\x00\x00\x00\x00"  # MTIME


def test_rerun_in_place_is_identical_and_leaves_no_stale_file(tmp_path):
    generate(tmp_path, users=1000, seed=5, )
    first = _tree(tmp_path)
    from datetime import date
    generate(tmp_path, users=1000, seed=5, end=date(2025, 6, 30))  # other file names
    assert not any("20251231" in name for name in _tree(tmp_path))
    generate(tmp_path, users=1000, seed=5)
    assert _tree(tmp_path) == first


def test_committed_sample_is_reproducible(tmp_path):
    assert main(["--users", str(SAMPLE_USERS), "--seed", str(SAMPLE_SEED), "--out", str(tmp_path), "--quiet"]) == 0
    fresh, committed = _tree(tmp_path), _tree(SAMPLE)
    assert fresh.keys() == committed.keys(), "data/sample files differ from a fresh run: run `make sample`"
    for name in fresh:
        assert fresh[name] == committed[name], f"{name} differs from a fresh run: run `make sample`"
    assert sum(len(b) for b in committed.values()) < 3 * 1024 * 1024


def test_chunks_depend_only_on_seed_and_index(tmp_path, monkeypatch):
    # With small chunks, the persons of the first chunks do not depend on how many users follow them.
    import gzip

    import samplegen.simulate as gen

    monkeypatch.setattr(gen, "CHUNK_SIZE", 300)
    generate(tmp_path / "a", users=1000, seed=9)
    generate(tmp_path / "b", users=700, seed=9)
    pa = gzip.decompress((tmp_path / "a" / "truth" / "persons.csv.gz").read_bytes()).decode().splitlines()
    pb = gzip.decompress((tmp_path / "b" / "truth" / "persons.csv.gz").read_bytes()).decode().splitlines()
    assert len(pa) == 1001 and len(pb) == 701
    assert pa[:601] == pb[:601]
    assert pa[601:701] != pb[601:701]  # the third chunk has 400 persons in one run and 100 in the other


def test_docs_list_the_committed_sample():
    import json
    import re

    manifest = json.loads((SAMPLE / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["users"], manifest["seed"]) == (SAMPLE_USERS, SAMPLE_SEED)
    doc = (REPO / "docs" / "sample-data.md").read_text(encoding="utf-8")
    listed = {m[0]: (int(m[1].replace(",", "")), int(m[2].replace(",", "")))
              for m in re.findall(r"^\| `((?:landing|truth)/[^`]+)` \| ([\d,]+) \| ([\d,]+) \|$", doc, re.M)}
    assert listed == {k: (v["rows"], v["bytes"]) for k, v in manifest["files"].items()}
    assert f"--users {SAMPLE_USERS} --seed {SAMPLE_SEED} --out data/sample" in doc
