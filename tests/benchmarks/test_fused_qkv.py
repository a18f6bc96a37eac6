import importlib.util
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fused_qkv.py"
_spec = importlib.util.spec_from_file_location("fused_qkv", _SCRIPT)
fused_qkv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fused_qkv)


def test_smoke_run_writes_every_row(tmp_path):
    output = tmp_path / "qkv.md"
    fused_qkv.main(["--smoke", "--output", str(output)])
    rows = [line for line in output.read_text().splitlines() if line.startswith("| 128 |")]
    settings = {tuple(cell.strip() for cell in row.split("|")[2:4]) for row in rows}
    assert settings == {
        (policy, xla) for policy in ("float32", "mixed_bfloat16") for xla in ("off", "on")
    }
    for row in rows:
        assert row.rstrip(" |").endswith("x")
