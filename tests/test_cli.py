import contextlib
import io
import json
import os
import subprocess
import sys

import pytest

from keras_attn.cli import build_parser, main


def _run(*args, timeout=600):
    """`keras-attn ARGS` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "keras_attn.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _cli(*args):
    """`keras-attn ARGS` in this process (a fresh one costs seconds of
    TensorFlow start-up): the exit code and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit_info:  # argparse: --help, usage errors
            code = exit_info.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


# CI runs the full `keras-attn quickstart` itself (the README's first command).
@pytest.mark.slow
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
    result = _cli("quickstart", "--help")
    assert result.returncode == 0
    for option in ("--fast", "--seed", "--metrics-json"):
        assert option in result.stdout


def test_unknown_command_exits_non_zero():
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["no-such-command"])
    assert exit_info.value.code != 0


def test_bad_output_path_gives_one_line_error(tmp_path):
    result = _cli("quickstart", "--fast", "--metrics-json", str(tmp_path / "missing" / "m.json"))
    assert result.returncode == 2
    assert "keras-attn quickstart: error:" in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------- train and the rest

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")
# Few examples, one small layer, one epoch: a few seconds of training each.
_SMALL = ["--epochs", "1", "--batch-size", "32", "--verbose", "2"]


def _train(recipe, output_dir, *extra):
    result = _cli("train", os.path.join(ZOO, recipe), "--output-dir", str(output_dir),
                  *_SMALL, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _error_line(result):
    """The one line a failed command leaves (after TensorFlow's start-up logs
    in a process of its own)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("keras-attn ")]
    assert len(lines) == 1, result.stderr
    assert result.stderr.rstrip().endswith(lines[0])
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny translator, classifier and generator, trained once for the module."""
    root = tmp_path_factory.mktemp("cli")
    runs = {}
    runs["translator"] = _train(
        "translator_tiny_number_words.yaml", root / "translator",
        "--set", "data.train.num_examples=128", "--set", "data.validation.num_examples=32",
        "--set", "data.test.num_examples=32", "--set", "model.num_encoder_layers=1",
        "--set", "model.num_decoder_layers=1",
        "--set", "training.schedule={type: inverse_sqrt, warmup_steps: 4}",
        "--set", "training.learning_rate=null", "--set", "training.label_smoothing=0.1",
    )
    runs["classifier"] = _train(
        "classifier_tiny_sentiment.yaml", root / "classifier",
        "--set", "data.train.num_examples=128", "--set", "data.validation.num_examples=32",
        "--set", "data.test.num_examples=32", "--set", "model.num_layers=1",
    )
    # The generator learns from a file of the user's, as `--data-path` allows.
    texts = root / "letters.txt"
    texts.write_text("\n".join(["abcdefg", "mnopqr", "uvwxyz", "defghij"] * 40) + "\n")
    runs["generator"] = _train(
        "generator_tiny_alphabet.yaml", root / "generator", "--data-path", str(texts),
        "--set", "model.num_layers=1",
    )
    return root, runs


def test_train_writes_a_run_per_recipe(trained):
    root, runs = trained
    for task in ("translator", "classifier", "generator"):
        for name in ("preset/config.json", "training_log.csv", "metrics.json"):
            assert (root / task / name).is_file(), (task, name)
        record = json.loads((root / task / "metrics.json").read_text())
        assert record["task"] == task and record["machine"]["cpu_count"]
        assert "saved to" in runs[task].stdout
    translator = json.loads((root / "translator" / "metrics.json").read_text())
    assert translator["recipe"]["training"]["schedule"]["type"] == "inverse_sqrt"
    assert translator["training"]["epochs"] == 1 and translator["training"]["examples"] == 128
    assert "exact_match" in translator["metrics"]
    assert "bleu" not in translator["metrics"]  # the recipe's `bleu: false`
    generator = json.loads((root / "generator" / "metrics.json").read_text())
    assert generator["recipe"]["data"]["train"] == {
        "source": "files", "path": str(root / "letters.txt")}
    assert generator["recipe"]["data"]["test"] == {"from_train": 0.1}
    assert generator["training"]["examples"] == 144 and generator["metrics"]["examples"] == 16
    assert "data.test: 10% held out of" in runs["generator"].stdout


def test_evaluate_prints_the_metrics_as_json(trained, tmp_path):
    root, _ = trained
    result = _cli("evaluate", str(root / "translator"), "--data", "number_words",
                  "--num-examples", "8", "--beam-width", "2", "--set", "bleu=true",
                  "--json", str(tmp_path / "m.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout)
    assert metrics["examples"] == 8 and metrics["beam_width"] == 2
    assert 0 <= metrics["exact_match"] <= 1 and metrics["bleu"] >= 0
    assert json.loads((tmp_path / "m.json").read_text()) == metrics


def test_translate_reads_standard_input(trained):
    root, _ = trained
    result = subprocess.run(
        [sys.executable, "-m", "keras_attn.cli", "translate", str(root / "translator"),
         "--beam-width", "2"],
        input="seven\n\nforty two\n", capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(result.stdout.splitlines()) == 2  # one line per non-blank input line


def test_classify_prints_label_probability_and_text(trained):
    root, _ = trained
    result = _cli("classify", str(root / "classifier"), "the film was good", "it was not good")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[2] for row in rows] == ["the film was good", "it was not good"]
    for label, probability, _ in rows:
        assert label in ("negative", "positive") and 0.5 <= float(probability) <= 1


def test_generate_reads_an_input_file_and_samples(trained, tmp_path):
    root, _ = trained
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("abc\nmno\n")
    result = _cli("generate", str(root / "generator"), "--input", str(prompts),
                  "--max-new-tokens", "3", "--temperature", "0.7", "--top-k", "5",
                  "--top-p", "0.9", "--seed", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(result.stdout.splitlines()) == 2


def test_a_finished_run_is_refused_with_one_error_line(trained):
    root, _ = trained
    result = _cli("train", os.path.join(ZOO, "generator_tiny_alphabet.yaml"),
                  "--output-dir", str(root / "classifier"))
    assert result.returncode == 2
    assert "holds a finished run" in _error_line(result)


def test_wrong_model_kind_and_empty_input(trained, capsys, monkeypatch):
    root, _ = trained
    assert main(["generate", str(root / "classifier"), "abc"]) == 2
    assert "holds a classifier, not a generator" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n  \n"))
    assert main(["classify", str(root / "classifier")]) == 2
    assert "no input" in capsys.readouterr().err


def test_export_then_serve_check_in_a_tensorflow_only_process(trained, tmp_path):
    root, runs = trained
    export_dir = tmp_path / "classifier_export"
    result = _cli("export", str(root / "classifier"), str(export_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (export_dir / "saved_model.pb").is_file()
    texts = ["the film was not bad", "the plot was dull"]
    python = _cli("classify", str(root / "classifier"), *texts)
    served = _cli("serve-check", str(export_dir), *texts, "--repeats", "2")
    assert served.returncode == 0, served.stderr[-2000:]
    assert "TensorFlow only" in served.stderr and "ms" in served.stderr
    # The same labels as the Python API, line by line.
    python_labels = [line.split("\t")[0] for line in python.stdout.strip().splitlines()]
    served_lines = served.stdout.strip().splitlines()
    assert len(served_lines) == 2
    for text, label, line in zip(texts, python_labels, served_lines):
        assert line.startswith(text + "\t") and f"labels={label}" in line
    again = _cli("export", str(root / "classifier"), str(export_dir))
    assert again.returncode == 2 and "already exists" in _error_line(again)
    wrong = _cli("export", str(root / "classifier"), str(tmp_path / "x"), "--beam-width", "2")
    assert wrong.returncode == 2
    assert "--beam-width does not apply to a classifier" in _error_line(wrong)


def test_prune_writes_a_smaller_preset_and_reports_the_metric(trained, tmp_path, capsys):
    from keras_attn.models import Classifier

    root, _ = trained
    out = tmp_path / "pruned"
    # The run's classifier has one layer of 4 heads: 0.5 removes 2 of them,
    # scored on the run's own validation data (32 examples).
    assert main(["prune", str(root / "classifier"), "--heads", "0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "of the run's validation data (32 examples)" in printed
    assert "kept heads (2 of 4; 2 pruned):" in printed
    assert "encoder layer 0: 2/4 [" in printed
    assert "accuracy: " in printed and " before, " in printed
    pruned = Classifier.from_preset(out)
    assert pruned.backbone.head_counts == [2]
    assert main(["prune", str(root / "classifier"), "--heads", "0.5", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_time_budget_option_reaches_the_run(tmp_path, capsys):
    recipe = os.path.join(ZOO, "generator_tiny_alphabet.yaml")
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", recipe, "--time-budget", "0"])
    assert exit_info.value.code == 2
    assert "argument --time-budget: must be a positive number of seconds (got '0')" in (
        capsys.readouterr().err)
    # A millisecond is spent before training starts (loading the data), so the
    # run goes straight to evaluating and saving the untrained model.
    output_dir = tmp_path / "run"
    assert main(["train", recipe, "--output-dir", str(output_dir), "--time-budget", "0.001",
                 "--set", "data.train.num_examples=64", "--set", "data.test.num_examples=8",
                 "--set", "model.num_layers=1", "--verbose", "0"]) == 0
    record = json.loads((output_dir / "metrics.json").read_text())
    assert record["recipe"]["training"]["time_budget"] == 0.001
    training = record["training"]
    assert training["time_budget"] == 0.001 and training["stopped_by_budget"] is True
    assert training["steps"] == 0 and training["epochs_reached"] == 0
    assert training["budget_seconds_spent"] >= 0.001
    assert record["metrics"]["examples"] == 8 and (output_dir / "preset" / "config.json").is_file()
    assert "the time budget is spent" in capsys.readouterr().out


def test_debug_shows_the_traceback(tmp_path):
    result = _run("--debug", "train", str(tmp_path / "missing.yaml"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "missing.yaml" in result.stderr


@pytest.mark.parametrize("command", [
    "quickstart", "train", "evaluate", "translate", "classify", "generate", "export",
    "serve-check", "prune"])
def test_every_subcommand_explains_every_option(command, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    subparser = parser._subparsers._group_actions[0].choices[command]
    for action in subparser._actions:
        assert action.help, (command, action.dest)
        for option in action.option_strings:
            assert option in text


@pytest.mark.parametrize("argv, message", [
    (["train", "no/such/recipe.yaml"], "keras-attn train: error: recipe 'no/such/recipe.yaml'"),
    (["train", os.path.join(ZOO, "generator_tiny_alphabet.yaml"), "--set", "training.epochs=0"],
     "training.epochs: must be a positive integer"),
    (["train", os.path.join(ZOO, "generator_tiny_alphabet.yaml"), "--set", "epochs"],
     "must look like KEY=VALUE"),
    (["train", os.path.join(ZOO, "generator_tiny_alphabet.yaml"), "--data-path", "nope.txt"],
     "--data-path: 'nope.txt' does not exist"),
    (["evaluate", "no/such/dir"], "keras-attn evaluate: error: model directory"),
    (["translate", "no/such/dir", "hello"], "keras-attn translate: error:"),
])
def test_bad_input_gives_one_error_line_and_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_masked_lm_trains_evaluates_and_exports_through_the_cli(tmp_path):
    run = tmp_path / "masked_lm"
    _train("masked_lm_tiny_sorted_letters.yaml", run, "--set", "data.train.num_examples=256",
           "--set", "data.test.num_examples=32", "--set", "model.num_layers=1")
    record = json.loads((run / "metrics.json").read_text())
    assert record["task"] == "masked_lm" and record["metrics"]["examples"] == 32
    assert {"loss", "masked_accuracy", "perplexity"} <= set(record["metrics"])
    evaluated = _cli("evaluate", str(run), "--data", "sorted_letters", "--num-examples", "16")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads(evaluated.stdout)["examples"] == 16
    export_dir = tmp_path / "masked_lm_export"
    exported = _cli("export", str(run), str(export_dir))
    assert exported.returncode == 0, exported.stderr[-2000:]
    served = _cli("serve-check", str(export_dir), "qdm[MASK]d=ddmqx", "--signature", "fill_mask")
    assert served.returncode == 0, served.stderr[-2000:]
    (line,) = served.stdout.strip().splitlines()
    assert line.startswith("qdm[MASK]d=ddmqx\t") and "texts=qdm" in line


def test_generate_and_translate_pass_the_repetition_controls(tmp_path, capsys):
    import keras

    from keras_attn.models import Generator, Translator

    keras.utils.set_random_seed(1)
    generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1, hidden_dim=16)
    generator.save_to_preset(str(tmp_path / "generator"))
    translator = Translator.from_preset("tiny", source_length=16, target_length=8,
                                        num_encoder_layers=1, num_decoder_layers=1, hidden_dim=16)
    translator.save_to_preset(str(tmp_path / "translator"))
    prompts, sources = ["ab", "xyz"], ["one two", "three"]

    controls = ["--no-repeat-ngram-size", "1", "--repetition-penalty", "1.3"]
    assert main(["generate", str(tmp_path / "generator"), *prompts, "--max-new-tokens", "8",
                 "--no-stop", *controls]) == 0
    loaded = Generator.from_preset(str(tmp_path / "generator"))
    options = dict(max_new_tokens=8, stop_token_ids=None)
    expected = loaded.generate(prompts, no_repeat_ngram_size=1, repetition_penalty=1.3,
                               **options)
    assert capsys.readouterr().out == "".join(f"{text}\n" for text in expected)
    assert expected != loaded.generate(prompts, **options)  # the controls changed the text

    # Texts may follow the options.
    assert main(["translate", str(tmp_path / "translator"), "--beam-width", "2", *controls,
                 *sources]) == 0
    loaded = Translator.from_preset(str(tmp_path / "translator"))
    expected = loaded.translate(sources, beam_width=2, no_repeat_ngram_size=1,
                                repetition_penalty=1.3)
    assert capsys.readouterr().out == "".join(f"{text}\n" for text in expected)
    assert expected != loaded.translate(sources, beam_width=2)

    for option, value, message in [
        ("--repetition-penalty", "0", "must be a positive number (got '0')"),
        ("--repetition-penalty", "nan", "must be a finite number (got 'nan')"),
        ("--no-repeat-ngram-size", "-2", "must be a non-negative integer (got '-2')"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["translate", str(tmp_path / "translator"), "one", option, value])
        assert exit_info.value.code == 2
        assert f"argument {option}: {message}" in capsys.readouterr().err


def test_prune_of_a_preset_needs_data(tmp_path, capsys):
    from keras_attn.models import Classifier

    Classifier.from_preset("tiny", num_classes=2, num_layers=1).save_to_preset(tmp_path / "m")
    out = str(tmp_path / "out")
    assert main(["prune", str(tmp_path / "m"), "--heads", "0.25", "--out", out]) == 2
    assert "pass --data or --data-path" in capsys.readouterr().err
    assert main(["prune", str(tmp_path / "m"), "--heads", "0.25", "--out", out,
                 "--data", "sentiment_negation", "--num-examples", "8"]) == 0
    assert "kept heads (3 of 4; 1 pruned)" in capsys.readouterr().out
    assert Classifier.from_preset(out).backbone.head_counts == [3]


def test_texts_may_follow_options_and_unknown_options_still_fail(capsys):
    from keras_attn.cli import _parse

    parser = build_parser()
    args = _parse(parser, ["translate", "RUN", "--beam-width", "2", "six"])
    assert args.texts == ["six"] and args.beam_width == 2 and args.model_dir == "RUN"
    args = _parse(parser, ["generate", "RUN", "ab", "--top-k", "3", "cd", "--no-stop", "ef"])
    assert args.texts == ["ab", "cd", "ef"] and args.top_k == 3 and args.no_stop
    for argv, unknown in [(["translate", "RUN", "six", "--beam-widht", "2"], "--beam-widht"),
                          (["train", "recipe.yaml", "extra"], "extra")]:
        with pytest.raises(SystemExit) as exit_info:
            _parse(parser, argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"keras-attn {argv[0]}: error: unrecognized arguments: {unknown}" in err


def test_quickstart_output_dir_under_a_file_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "models.txt"
    blocker.write_text("not a folder")
    assert main(["quickstart", "--fast", "--output-dir", str(blocker / "models")]) == 2
    out, err = capsys.readouterr()
    assert "[1/3]" not in out  # nothing was trained
    assert err.strip() == (f"keras-attn quickstart: error: --output-dir: "
                           f"'{blocker / 'models'}' is under '{blocker}', which is an existing "
                           "file, not a folder")
    # A file where one of the three model folders would go is caught as well.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "generator").write_text("")
    assert main(["quickstart", "--fast", "--output-dir", str(tmp_path / "out")]) == 2
    assert "generator' is an existing file, not a folder" in capsys.readouterr().err


def test_invalid_utf8_input_names_the_file_and_the_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "texts.txt"
    path.write_bytes(b"seven\n\nfor\xffty two\n")
    assert main(["translate", str(tmp_path / "no_model"), "--input", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"keras-attn translate: error: --input {path}, line 3: not valid UTF-8 "
                   "(byte 4 of the line is 0xff); save the file as UTF-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xc3(\n")))
    assert main(["classify", str(tmp_path / "no_model")]) == 2
    assert "error: standard input, line 2: not valid UTF-8 (byte 1 of the line is 0xc3)" in (
        capsys.readouterr().err)


def test_export_refusal_names_the_command_line_flag(tmp_path, capsys):
    existing = tmp_path / "export"
    existing.mkdir()
    assert main(["export", str(tmp_path / "no_model"), str(existing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"keras-attn export: error: OUTPUT_DIR '{existing}' already exists; pass "
                   "--overwrite to replace it (only once the new export is written)")
    assert "overwrite=True" not in err
