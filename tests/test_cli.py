import json
import subprocess
import sys

import pytest

from keras_attn.cli import build_parser


def _run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "keras_attn.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_quickstart_fast_learns_both_tasks(tmp_path):
    metrics_path = tmp_path / "metrics.json"
    result = _run("quickstart", "--fast", "--metrics-json", str(metrics_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout
    metrics = json.loads(metrics_path.read_text())
    assert metrics["classifier_accuracy"] > 0.8
    assert metrics["copy_loss_last_epoch"] < 0.25 * metrics["copy_loss_first_epoch"]
    assert metrics["copy_exact_match"] > 0.8
    assert metrics["cached_equals_uncached"] is True


def test_help_lists_quickstart_options():
    result = _run("quickstart", "--help", timeout=120)
    assert result.returncode == 0
    for option in ("--fast", "--seed", "--metrics-json"):
        assert option in result.stdout


def test_unknown_command_exits_non_zero():
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["no-such-command"])
    assert exit_info.value.code != 0


def test_bad_output_path_gives_one_line_error(tmp_path):
    result = _run("quickstart", "--fast", "--metrics-json", str(tmp_path / "missing" / "m.json"))
    assert result.returncode == 2
    assert "keras-attn quickstart: error:" in result.stderr
    assert "Traceback" not in result.stderr
