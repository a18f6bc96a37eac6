import importlib.util
import json
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "attention_memory.py"
_spec = importlib.util.spec_from_file_location("attention_memory", _SCRIPT)
attention_memory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attention_memory)


def test_smoke_run_writes_every_row(tmp_path):
    output = tmp_path / "attention.md"
    rows_path = tmp_path / "rows.json"
    attention_memory.main(
        ["--smoke", "--output", str(output), "--json", str(rows_path)]
    )
    rows = json.loads(rows_path.read_text())
    assert {(r["length"], r["implementation"]) for r in rows} == {
        (40, name) for name in attention_memory.IMPLEMENTATIONS
    }
    for row in rows:
        # Every configuration ran in its own process and was measured.
        assert "skipped" not in row, row
        assert row["step_ms"] > 0 and row["peak_mib"] >= 0
    text = output.read_text()
    for name in attention_memory.IMPLEMENTATIONS:
        assert f"| 40 | {name} | float32 | off |" in text
    summary = text.split("## Best setting")[1]
    assert "| 40 | keras_attn" in summary and "x |" in summary


def test_configurations_over_the_cap_are_skipped_and_say_so(tmp_path):
    output = tmp_path / "attention.md"
    attention_memory.main([
        "--lengths", "100000", "--implementations", "keras_attn explicit",
        "--memory-cap-gib", "1", "--output", str(output),
    ])
    text = output.read_text()
    row = "| 100000 | keras_attn explicit | float32 | off | — | — | skipped: over the 1 GiB cap |"
    assert row in text
