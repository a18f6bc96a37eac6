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


@pytest.mark.slow
def test_xla_training_step_smoke_writes_both_tables(tmp_path):
    import xla_training_step

    output = tmp_path / "xla.md"
    xla_training_step.main(["--smoke", "--output", str(output)])
    text = output.read_text()
    assert "| generator | 16 | float32 |" in text
    assert "| generator | 16 | on |" in text and "| generator | 16 | off |" in text
    assert "steps_per_execution 1" in text


@pytest.mark.slow
def test_profile_ops_smoke_splits_both_sides_by_op_and_layer(tmp_path):
    import profile_ops

    output = tmp_path / "profile.md"
    results = profile_ops.main(["--smoke", "--model", "bert", "--steps", "2", "--warmup", "1",
                                "--output", str(output)])
    for side in ("keras_attn", "keras_hub"):
        step_seconds, times = results[side]
        op_types = {op_type for op_type, _ in times}
        assert step_seconds > 0 and any("MatMul" in op_type for op_type in op_types), op_types
    text = output.read_text()
    assert "| op type | keras_attn ms/step | keras_hub ms/step |" in text
    assert "backward: classifier/encoder_backbone" in text
