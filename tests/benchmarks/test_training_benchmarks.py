"""The training benchmarks' --smoke modes write every row (not timings)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))


@pytest.mark.slow
def test_training_speed_smoke_writes_every_setting(tmp_path):
    import training_speed

    output = tmp_path / "speed.json"
    training_speed.main(["--smoke", "--models", "gpt256", "--output", str(output)])
    results = json.loads(output.read_text())
    rows = results["models"]["gpt256"]["rows"]
    assert {(r["side"], r["precision"], r["xla"]) for r in rows} == {
        (side, p, x) for side in ("keras_attn", "keras_hub")
        for p, x in training_speed.SETTINGS
    }
    assert all(r["tokens_per_second"] > 0 and 0 < r["mfu"] for r in rows)
    assert set(results["peaks_gflops"]) == {"float32", "bfloat16"}
    assert "Best keras-attn / best keras-hub" in results["markdown"]


@pytest.mark.slow
def test_bucketing_smoke_writes_both_rows(tmp_path):
    import bucketing

    output = tmp_path / "bucketing.json"
    bucketing.main(["--smoke", "--output", str(output)])
    results = json.loads(output.read_text())
    assert [row["bucketing"] for row in results["rows"]] == [False, True]
    assert results["speedup_per_epoch"] > 0
    assert "| true |" in results["markdown"] and "| false |" in results["markdown"]
