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


def test_quickstart_fast_trains_all_three_tiny_models(tmp_path):
    metrics_path = tmp_path / "metrics.json"
    output_dir = tmp_path / "models"
    result = _run("quickstart", "--fast", "--metrics-json", str(metrics_path),
                  "--output-dir", str(output_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("[1/3] translator", "[2/3] classifier", "[3/3] generator"):
        assert line in result.stdout
    metrics = json.loads(metrics_path.read_text())
    assert metrics["translator"]["exact_match_beam4"] > 0.8
    assert metrics["classifier"]["accuracy"] > 0.85
    assert metrics["generator"]["continuation_accuracy"] > 0.85
    for name in ("translator", "classifier", "generator"):
        assert metrics[name]["loss_last_epoch"] < 0.5 * metrics[name]["loss_first_epoch"]
        assert (output_dir / name / "config.json").is_file()


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
