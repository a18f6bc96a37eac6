"""Every tutorial runs as written (its `--quick` mode, in a fresh process)
and writes the figures it promises."""

import os
import subprocess
import sys

import pytest

# Each tutorial runs in a process of its own and shares nothing with the others.
pytestmark = pytest.mark.spread_across_workers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TUTORIALS = os.path.join(ROOT, "tutorials")

# Each tutorial and the figures it writes.
FIGURES = {
    "01_attention_from_scratch.py": ["attention_weights.png"],
    "02_heads_and_positions.py": [
        "heads.png", "sinusoidal.png", "learned.png", "rotary.png", "alibi.png",
    ],
    "03_translator.py": ["alignment_attention.png", "alignment_relevance.png"],
    "04_classifier.py": ["fine_tuning.png"],
    "05_generator.py": ["temperature.png", "cache_speedup.png"],
    "06_looking_inside.py": [
        "attention_grid.png", "rollout.png", "flow.png", "relevance.png",
        "integrated_gradients.png", "value_norms.png", "head_importance.png",
        "pruning_curve.png",
    ],
    "07_export_and_serve.py": ["served_latency.png"],
    "08_scaling_up.py": ["step_times.png"],
}


def test_every_tutorial_is_tested():
    scripts = sorted(name for name in os.listdir(TUTORIALS) if name[:2].isdigit())
    assert scripts == sorted(FIGURES)


@pytest.mark.parametrize("script", sorted(FIGURES))
def test_tutorial_runs_and_writes_its_figures(script, tmp_path):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, os.path.join(TUTORIALS, script), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, env=environment, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for figure in FIGURES[script]:
        path = tmp_path / figure
        assert path.exists() and path.stat().st_size > 1000, figure
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
