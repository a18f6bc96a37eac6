"""The decoding benchmarks' --smoke modes: well-formed outputs, not timing."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(script, *args):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), "--smoke", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decoding")
    markdown = folder / "decoding.md"
    _run("generation_speed.py", "--output", str(markdown), "--json", str(folder / "g.json"))
    _run("translation_decoding.py", "--output", str(markdown), "--json", str(folder / "t.json"))
    return (markdown.read_text(), json.loads((folder / "g.json").read_text()),
            json.loads((folder / "t.json").read_text()))


def test_generation_speed_has_every_side_setting_and_batch(outputs):
    markdown, generation, _ = outputs
    rows = generation["rows"]
    cells = {(r["side"], r["dtype"], r["xla"], r["batch"]) for r in rows}
    assert cells == {(side, dtype, False, batch) for side in ("keras-attn", "keras-hub")
                     for dtype in ("float32", "mixed_bfloat16") for batch in (1, 2)}
    assert all(r["tokens_per_second"] > 0 and r["compile_seconds"] >= 0 for r in rows)
    assert set(generation["ratios"]) == {"1", "2"}
    table = [line for line in markdown.splitlines() if line.startswith("| keras-")]
    assert len(table) == len(rows)


def test_translation_decoding_has_greedy_and_beam_rows_in_the_same_file(outputs):
    markdown, _, translation = outputs
    assert [(r["search"], r["beams"]) for r in translation["rows"]] == [("greedy", 1), ("beam", 4)]
    assert all(r["sentences_per_second"] > 0 for r in translation["rows"])
    # Each script replaced only its own section.
    for section in ("generation_speed", "translation_decoding"):
        assert markdown.count(f"<!-- begin {section} -->") == 1
        assert markdown.count(f"<!-- end {section} -->") == 1
    assert "| greedy | 1 | 2 |" in markdown and "| beam | 4 | 2 |" in markdown


@pytest.mark.slow
def test_decode_weight_precision_smoke_has_every_weight_format(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import decode_weight_precision

    output = tmp_path / "weights.md"
    rows = decode_weight_precision.main(["--smoke", "--repeats", "1", "--output", str(output)])
    assert len(rows) == len(decode_weight_precision.WEIGHTS)
    text = output.read_text()
    for name in ("mixed_bfloat16 policy", "bfloat16 policy", "float32 + int8 weights"):
        assert name in text
