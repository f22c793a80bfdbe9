"""bench/pipeline.py caches generated brands: one of another activity (or size, or seed) is never reused."""

import json

import pytest

from tests.bench_scripts import load_bench

bench = load_bench("pipeline")


def test_brand_folder_names_the_activity():
    assert bench.brand_dir(1_000_000, 7, 1.0).name == "pipeline-1000000-7"  # brands generated before still serve
    assert bench.brand_dir(1_000_000, 7, 2.5).name == "pipeline-1000000-7-a2.5"
    assert bench.brand_dir(1_000_000, 7, 4.25).name == "pipeline-1000000-7-a4.25"


def test_reuses_only_the_same_brand(tmp_path, capsys):
    out = tmp_path / "brand"
    bench.generate(60, 3, 2.5, out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["users"], manifest["seed"], manifest["activity"]) == (60, 3, 2.5)
    bench.generate(60, 3, 2.5, out)
    assert "reusing" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="activity"):
        bench.generate(60, 3, 1.0, out)
    # a brand generated before samplegen had --activity was made at 1
    del manifest["activity"]
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    bench.generate(60, 3, 1.0, out)
    assert "reusing" in capsys.readouterr().out
