import importlib.util
import json
import os
import shutil

import keras
import numpy as np
import pytest
import yaml

from keras_attn.recipes import (
    apply_overrides,
    evaluate_model,
    load_recipe,
    load_recipe_data,
    train_recipe,
    validate_recipe,
    with_defaults,
)
from tests.interruptions import CrashAtStep

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")

# A generator small enough to train in a few seconds (plus XLA compilation).
TINY_GENERATOR = {
    "task": "generator",
    "preset": "tiny",
    "model": {"sequence_length": 16, "num_layers": 1},
    "tokenizer": {"type": "byte"},
    "data": {
        "train": {"source": "builtin", "name": "alphabet_runs", "num_examples": 128},
        "test": {"source": "builtin", "name": "alphabet_runs", "num_examples": 16},
    },
    "training": {"epochs": 1, "batch_size": 32, "learning_rate": 3e-3},
    "evaluation": {"prompt_length": 3, "continuation_length": 4, "batch_size": 16},
}


def _write(tmp_path, recipe, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe) if not isinstance(recipe, str) else recipe)
    return str(path)


def _quiet(*_):
    pass


# ------------------------------------------------------------ the zoo


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(ZOO) if f.endswith(".yaml")))
def test_every_zoo_recipe_is_valid(name):
    recipe = load_recipe(os.path.join(ZOO, name))
    assert recipe["task"] in name
    # What is recorded as run is itself a valid recipe.
    validate_recipe(with_defaults(recipe))


def test_zoo_has_a_tiny_and_a_paper_sized_recipe_per_task():
    names = set(os.listdir(ZOO))
    for expected in (
        "translator_tiny_number_words.yaml",
        "translator_tiny_dates.yaml",
        "translator_transformer_base_ted_pt_en.yaml",
        "classifier_tiny_sentiment.yaml",
        "classifier_bert_base_imdb.yaml",
        "generator_tiny_alphabet.yaml",
        "generator_tiny_sorted_letters.yaml",
        "generator_gpt2_small_tiny_shakespeare.yaml",
    ):
        assert expected in names
    assert "masked_lm_tiny_sorted_letters.yaml" in names
    for name in names:
        if not name.endswith(".yaml"):
            continue
        task = load_recipe(os.path.join(ZOO, name))["task"]
        if name.endswith("_small_files.yaml"):  # the user's own data, a CPU budget
            assert "requires" not in load_recipe(os.path.join(ZOO, name))
        elif not name[len(task) + 1 :].startswith("tiny"):
            assert load_recipe(os.path.join(ZOO, name))["requires"] == ["download", "accelerator"]


# A few lines of real-looking text for each `*_small_files` recipe: punctuation,
# placeholders, quotes and umlauts, as in the message catalogs they were tuned on.
_SMALL_FILES_ROWS = {
    "translator": lambda i: f"File »{i}« not found (Ctrl+S).\tDatei »{i}« nicht gefunden (Strg+S).",
    "classifier": lambda i: (f"git\tcannot read '%s': commit {i}" if i % 2
                             else f"tar\tÜbertrage Archiv {i}: fertig."),
    "generator": lambda i: f"Datei »%s« Nummer {i} konnte nicht geöffnet werden.",
}
# What shrinks a recipe's model to a few seconds of training; everything else
# (tokenizer type, held-out splits, schedule, budget, decoding) is the recipe's.
_SMALL_FILES_SHRINK = {
    "translator": {"model.num_encoder_layers": 1, "model.num_decoder_layers": 1},
    "classifier": {"model.num_layers": 1},
    "generator": {"model.num_layers": 1},
}


@pytest.mark.parametrize("task", ["translator", "classifier", "generator"])
def test_a_small_files_recipe_trains_on_your_file_within_its_budget(tmp_path, task):
    from keras_attn.models import Task

    recipe = load_recipe(os.path.join(ZOO, f"{task}_small_files.yaml"))
    assert recipe["training"]["time_budget"] == 900
    assert recipe["tokenizer"]["type"] == "sentencepiece"
    assert recipe["data"]["train"]["source"] == "files"
    assert all("from_train" in recipe["data"][role] for role in ("validation", "test"))
    data = tmp_path / "data.tsv"
    data.write_text("".join(_SMALL_FILES_ROWS[task](i) + "\n" for i in range(60)),
                    encoding="utf-8")
    small = apply_overrides(recipe, {
        "data.train.path": str(data), "tokenizer.vocabulary_size": 300,
        "model.hidden_dim": 16, "model.intermediate_dim": 32, "model.num_heads": 2,
        "training.epochs": 1, "training.batch_size": 16, "training.tensorboard": False,
        "training.jit_compile": False, "training.schedule.warmup_steps": 2,
        **_SMALL_FILES_SHRINK[task],
    })
    record = train_recipe(small, tmp_path / "run", log=_quiet, verbose=0)
    assert record["training"]["stopped_by_budget"] is False
    assert record["recipe"]["evaluation"] == with_defaults(recipe)["evaluation"]
    metric = {"translator": "bleu", "classifier": "accuracy", "generator": "perplexity"}[task]
    assert np.isfinite(record["metrics"][metric])
    model = Task.for_name(task).from_preset(str(tmp_path / "run" / "preset"))
    tokenizer = model.source_tokenizer if task == "translator" else model.tokenizer
    text = "Datei »x.txt« nicht  gefunden (Strg+S)."
    assert tokenizer.detokenize(tokenizer.tokenize(text)).numpy().decode() == text


def test_the_zoo_readme_describes_every_recipe():
    readme = open(os.path.join(ZOO, "README.md"), encoding="utf-8").read()
    for name in os.listdir(ZOO):
        if name.endswith(".yaml"):
            assert f"`{name}`" in readme and f"`{name[:-5]}`" in readme, name


# ---------------------------------------------------------- validation


@pytest.mark.parametrize(
    "change, message",
    [
        ({"training": {"epoch": 2}}, r"training\.epoch: unknown key"),
        ({"training": {"epochs": "ten"}}, r"training\.epochs: must be a positive integer"),
        ({"training": {"epochs": 0}}, r"training\.epochs: must be a positive integer"),
        ({"training": {"precision": "fp8"}}, r"training\.precision: must be one of"),
        ({"training": {"time_budget": 0}},
         r"training\.time_budget: must be a positive number of seconds \(got 0\)"),
        ({"training": {"time_budget": "15 minutes"}},
         r"training\.time_budget: must be a positive number of seconds \(got '15 minutes'\)"),
        ({"training": {"time_budget": -60}}, r"training\.time_budget: must be a positive"),
        ({"training": {"time_budget": float("inf")}},
         r"training\.time_budget: must be a positive number of seconds \(got inf\)"),
        ({"training": {"schedule": {"type": "inverse_sqrt"}}},
         r"training\.schedule\.warmup_steps: must be set"),
        ({"training": {"learning_rate": 1e-3,
                       "schedule": {"type": "inverse_sqrt", "warmup_steps": 10}}},
         r"training\.learning_rate: is not used with schedule inverse_sqrt"),
        ({"training": {"optimizer": {"weight_decay": 0.1}}},
         r"training\.optimizer\.weight_decay: applies to"),
        ({"task": "summarizer"},
         r"task: must be one of classifier, generator, masked_lm, translator"),
        ({"preset": "huge"}, r"preset: must be a generator preset name"),
        ({"model": {"num_layer": 2}}, r"model\.num_layer: unknown argument of a generator"),
        ({"tokenizer": {"type": "word_piece"}}, r"tokenizer\.vocabulary_size: is required"),
        ({"tokenizer": {"type": "byte", "vocabulary_size": 9}}, r"tokenizer\.vocabulary_size"),
        ({"tokenizer": {"type": "sentencepiece"}},
         r"tokenizer\.vocabulary_size: is required with type sentencepiece"),
        ({"tokenizer": {"type": "sentencepiece", "vocabulary_size": 263}},
         r"tokenizer\.vocabulary_size: must be more than 263 with type sentencepiece"),
        ({"tokenizer": {"type": "sentencepiece", "vocabulary_size": 500, "lowercase": True}},
         r"tokenizer\.lowercase: applies to type word_piece only"),
        ({"tokenizer": {"type": "word_piece", "vocabulary_size": 500, "model_type": "bpe"}},
         r"tokenizer\.model_type: applies to type sentencepiece only"),
        ({"tokenizer": {"type": "byte", "character_coverage": 1.0}},
         r"tokenizer\.character_coverage: applies to type sentencepiece only"),
        ({"tokenizer": {"type": "sentencepiece", "vocabulary_size": 500, "model_type": "word"}},
         r"tokenizer\.model_type: must be one of unigram, bpe"),
        ({"tokenizer": {"type": "sentencepiece", "vocabulary_size": 500,
                        "character_coverage": 0}},
         r"tokenizer\.character_coverage: must be a number in \(0, 1\]"),
        ({"tokenizer": {"type": "spm"}},
         r"tokenizer\.type: must be one of byte, word_piece, sentencepiece"),
        ({"data": {"train": {"source": "builtin", "nme": "x"}, "test": "alphabet_runs"}},
         r"data\.train\.nme: unknown key for source builtin"),
        ({"data": {"train": {"name": "alphabet_runs"}}}, r"data\.train\.source: is required"),
        ({"data": {"train": {"from_train": 0.1}}}, r"data\.train\.from_train: applies to"),
        ({"data": {"train": "alphabet_runs"}}, r"data\.test: is required to score"),
        ({"data": {"train": "alphabet_runs", "test": {"from_train": 1.5}}},
         r"data\.test\.from_train: must be a number strictly between 0 and 1"),
        ({"evaluation": {"beam_width": 4}}, r"evaluation\.beam_width: applies to translator"),
        ({"requires": ["gpu"]}, r"requires\[0\]: must be one of download, accelerator"),
        ({"expected": {"metric": "perplexity", "value": 3}}, r"expected\.source: is required"),
    ],
)
def test_bad_recipes_name_the_file_and_the_key_path(tmp_path, change, message):
    recipe = {**TINY_GENERATOR, **change}
    path = _write(tmp_path, recipe, "bad.yaml")
    with pytest.raises(ValueError, match=rf"bad\.yaml: {message}"):
        load_recipe(path)


def test_missing_keys_and_broken_yaml(tmp_path):
    with pytest.raises(ValueError, match=r"broken\.yaml: not valid YAML"):
        load_recipe(_write(tmp_path, "task: [generator", "broken.yaml"))
    with pytest.raises(ValueError, match=r"list\.yaml: must be a YAML mapping"):
        load_recipe(_write(tmp_path, "- task", "list.yaml"))
    recipe = {k: v for k, v in TINY_GENERATOR.items() if k != "data"}
    with pytest.raises(ValueError, match=r"nodata\.yaml: data: is required"):
        load_recipe(_write(tmp_path, recipe, "nodata.yaml"))
    with pytest.raises(OSError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")


def test_relative_data_paths_are_taken_from_the_recipe_folder(tmp_path):
    (tmp_path / "recipes").mkdir()
    recipe = {**TINY_GENERATOR,
              "data": {"train": {"source": "files", "path": "../texts.txt"},
                       "test": {"from_train": 0.1}}}
    loaded = load_recipe(_write(tmp_path / "recipes", recipe))
    assert loaded["data"]["train"]["path"] == str(tmp_path / "texts.txt")


@pytest.mark.parametrize(
    "task, source, expected",
    [
        ("translator", "files", {"type": "sentencepiece", "vocabulary_size": 4000}),
        ("generator", "files", {"type": "sentencepiece", "vocabulary_size": 4000}),
        ("generator", "builtin", {"type": "byte"}),
        ("classifier", "files", {"type": "byte"}),
    ],
)
def test_the_default_tokenizer_follows_the_task_and_the_data(task, source, expected):
    train = ({"source": "files", "path": "own.tsv"} if source == "files"
             else {"source": "builtin", "name": "number_words"})
    recipe = validate_recipe({"task": task, "preset": "tiny", "data": {"train": train}})
    assert "tokenizer" not in recipe
    plan = with_defaults(recipe)
    assert plan["tokenizer"] == expected
    assert validate_recipe(plan)["tokenizer"] == expected  # what runs is a valid recipe
    given = {"type": "word_piece", "vocabulary_size": 300}
    assert with_defaults({**recipe, "tokenizer": given})["tokenizer"] == given


def test_apply_overrides_reads_values_as_yaml():
    recipe = validate_recipe(TINY_GENERATOR)
    changed = apply_overrides(recipe, {
        "training.epochs": "3",
        "training.jit_compile": "false",
        "training.learning_rate": "1e-4",
        "data.train.num_examples": 64,
        "data.validation.from_train": "0.25",
        "training.schedule": "{type: cosine, warmup_steps: 5}",
        "evaluation.continuation_length": "null",
        "evaluation.prompt_length": "null",
    })
    assert changed["training"]["epochs"] == 3
    assert changed["training"]["jit_compile"] is False
    assert changed["training"]["learning_rate"] == 1e-4
    assert changed["data"]["train"]["num_examples"] == 64
    assert changed["data"]["validation"] == {"from_train": 0.25}
    assert changed["training"]["schedule"] == {"type": "cosine", "warmup_steps": 5}
    assert "prompt_length" not in changed["evaluation"]
    assert recipe["training"]["epochs"] == 1  # the original is left alone


def test_apply_overrides_errors_name_the_key_path():
    recipe = validate_recipe(TINY_GENERATOR)
    with pytest.raises(ValueError, match=r"training\.epochs: must be a positive integer"):
        apply_overrides(recipe, {"training.epochs": "zero"})
    with pytest.raises(ValueError, match=r"training\.epohcs: unknown key"):
        apply_overrides(recipe, {"training.epohcs": 2})
    with pytest.raises(ValueError, match=r"task is 'generator', not a mapping"):
        apply_overrides(recipe, {"task.name": "x"})
    with pytest.raises(ValueError, match="must be dotted names"):
        apply_overrides(recipe, {"training..epochs": 2})


def test_from_train_holds_out_a_share_of_the_training_examples():
    recipe = with_defaults(validate_recipe({
        **TINY_GENERATOR,
        "data": {
            "train": {"source": "builtin", "name": "sorted_letters", "num_examples": 100},
            "validation": {"from_train": 0.1},
            "test": {"from_train": 0.2},
        },
    }))
    data = load_recipe_data(recipe, log=_quiet)
    assert (len(data["train"]), len(data["validation"]), len(data["test"])) == (70, 10, 20)
    every = data["train"].texts + data["validation"].texts + data["test"].texts
    assert sorted(every) == sorted(load_recipe_data(
        {**recipe, "data": {"train": recipe["data"]["train"]}}, log=_quiet)["train"].texts)
    again = load_recipe_data(recipe, log=_quiet)
    assert again["test"].texts == data["test"].texts  # fixed by training.seed
    lines = []
    load_recipe_data(recipe, log=lines.append)
    assert not any(line.startswith("warning:") for line in lines)  # 10 and 20 held out


def test_a_tiny_file_warns_that_its_held_out_sets_are_too_small(tmp_path):
    from keras_attn.recipes.recipe_data import MIN_HELD_OUT_EXAMPLES

    pairs = tmp_path / "three.tsv"
    pairs.write_text("one\t1\ntwo\t2\nthree\t3\n", encoding="utf-8")
    recipe = with_defaults(validate_recipe({
        "task": "translator", "preset": "tiny",
        "data": {"train": {"source": "files", "path": str(pairs)},
                 "validation": {"from_train": 0.05}, "test": {"from_train": 0.1}},
    }))
    lines = []
    data = load_recipe_data(recipe, log=lines.append)
    assert (len(data["train"]), len(data["validation"]), len(data["test"])) == (1, 1, 1)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [
        f"warning: data.{role} holds out only 1 example of the 3 of data.train (fewer than "
        f"{MIN_HELD_OUT_EXAMPLES}): its scores say little; give more training examples or a "
        "larger from_train share"
        for role in ("test", "validation")
    ]


# ------------------------------------------------------------ training


@pytest.fixture(scope="module")
def trained_generator(tmp_path_factory):
    """One finished run shared by the tests below (read-only for them)."""
    output_dir = tmp_path_factory.mktemp("runs") / "generator"
    lines = []
    record = train_recipe(TINY_GENERATOR, output_dir, log=lines.append, verbose=0)
    return output_dir, record, lines


def test_train_recipe_writes_the_run(trained_generator):
    output_dir, record, lines = trained_generator
    assert (output_dir / "preset" / "config.json").is_file()
    log = (output_dir / "training_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,") and len(log) == 2
    if importlib.util.find_spec("tensorboard"):
        assert any((output_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (output_dir / "in_progress").exists()
    saved = json.loads((output_dir / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(record))
    metrics = saved["metrics"]
    assert metrics["perplexity"] > 1 and metrics["examples"] == 16
    assert 0 <= metrics["continuation_accuracy"] <= 1
    assert saved["machine"]["cpu_count"] == os.cpu_count()
    assert saved["machine"]["tensorflow"] and saved["machine"]["keras"] == keras.__version__
    assert saved["wall_time_seconds"] > 0 and saved["training"]["examples"] == 128
    # What was reached: 128 examples in batches of 32, one epoch.
    assert saved["training"]["steps"] == 4 and saved["training"]["epochs"] == 1
    assert saved["training"]["epochs_reached"] == 1.0
    assert "time_budget" not in saved["training"]
    assert "time_budget" not in saved["recipe"]["training"]
    assert saved["recipe"]["training"]["epochs"] == 1  # the recipe as run, defaults filled
    assert saved["recipe"]["training"]["precision"] == "float32"
    assert any(line.startswith("test: perplexity") for line in lines)


def test_the_saved_preset_reloads(trained_generator):
    from keras_attn.models import Generator

    output_dir, _, _ = trained_generator
    model = Generator.from_preset(str(output_dir / "preset"))
    assert isinstance(model.generate("abc", max_new_tokens=2), str)
    again = evaluate_model(output_dir)  # the recipe's own test data and options
    assert again["perplexity"] == pytest.approx(
        json.loads((output_dir / "metrics.json").read_text())["metrics"]["perplexity"], rel=1e-4)
    other = evaluate_model(output_dir / "preset", {"source": "builtin", "name": "alphabet_runs",
                                                   "split": "validation", "num_examples": 8},
                           evaluation={"prompt_length": 2, "samples": 1})
    assert other["examples"] == 8 and other["continuation_examples"] == 8
    assert len(other["samples"]) == 1
    with pytest.raises(ValueError, match="holds a generator, not a translator"):
        evaluate_model(output_dir, "number_words", task="translator")


def test_a_finished_run_is_not_overwritten_without_asking(trained_generator):
    output_dir, _, _ = trained_generator
    with pytest.raises(ValueError, match="holds a finished run"):
        train_recipe(TINY_GENERATOR, output_dir, log=_quiet, verbose=0)


class _FailAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise RuntimeError("simulated crash")


def test_a_failed_run_keeps_earlier_results_and_the_rerun_resumes(trained_generator, tmp_path):
    output_dir = tmp_path / "run"
    shutil.copytree(trained_generator[0], output_dir)
    before = {p: p.read_bytes() for p in output_dir.rglob("*") if p.is_file()}
    recipe = apply_overrides(TINY_GENERATOR, {"training.epochs": 2})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_recipe(recipe, output_dir, overwrite=True, log=_quiet, verbose=0,
                     callbacks=[_FailAfterFirstEpoch()])
    for path, content in before.items():
        assert path.read_bytes() == content, path
    assert (output_dir / "in_progress" / "recipe.json").is_file()
    # A different recipe cannot resume that run without --overwrite...
    other = apply_overrides(recipe, {"training.learning_rate": 1e-3})
    (output_dir / "metrics.json").rename(output_dir / "metrics.old")
    with pytest.raises(ValueError, match="unfinished run of a different recipe"):
        train_recipe(other, output_dir, log=_quiet, verbose=0)
    (output_dir / "metrics.old").rename(output_dir / "metrics.json")
    # ...while the same one picks up after its last finished epoch.
    record = train_recipe(recipe, output_dir, overwrite=True, log=_quiet, verbose=0)
    assert record["training"]["resumed_at_epoch"] == 1
    assert len((output_dir / "training_log.csv").read_text().splitlines()) == 3
    assert json.loads((output_dir / "metrics.json").read_text())["recipe"]["training"][
        "epochs"] == 2
    assert not (output_dir / "in_progress").exists()


def test_classifier_with_word_piece_mixed_precision_and_hold_outs(tmp_path):
    recipe = {
        "task": "classifier",
        "preset": "tiny",
        "model": {"sequence_length": 16, "num_layers": 1},
        "tokenizer": {"type": "word_piece", "vocabulary_size": 100},
        "data": {
            "train": {"source": "builtin", "name": "sentiment_negation", "num_examples": 160},
            "validation": {"from_train": 0.1},
            "test": {"from_train": 0.1},
        },
        "training": {
            "epochs": 1,
            "batch_size": 32,
            "precision": "mixed_bfloat16",
            "label_smoothing": 0.1,
            "schedule": {"type": "cosine", "warmup_steps": 2},
            "optimizer": {"type": "adamw", "weight_decay": 0.01, "clipnorm": 1.0},
            "tensorboard": False,
        },
    }
    record = train_recipe(recipe, tmp_path / "run", log=_quiet, verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # restored afterwards
    assert record["training"]["examples"] == 128
    assert record["training"]["validation_examples"] == 16
    assert record["metrics"]["examples"] == 16
    assert 0 <= record["metrics"]["accuracy"] <= 1
    assert "final_val_loss" in record["training"]
    assert not (tmp_path / "run" / "tensorboard").exists()
    config = json.loads((tmp_path / "run" / "preset" / "config.json").read_text())
    assert config["config"]["label_names"] == ["negative", "positive"]


# --------------------------------------------------------- time budget

# 128 examples in batches of 32: 4 steps an epoch, 20 in all.
BUDGETED = {**TINY_GENERATOR,
            "training": {**TINY_GENERATOR["training"], "epochs": 5, "jit_compile": False,
                         "tensorboard": False}}


class _FakeClock:
    """Seconds that pass only when a test says: `setup` of them between the
    run's first reading (its start) and the next, as loading the data and
    training a tokenizer would take, then one per training step (`_Tick`)."""

    def __init__(self, setup=0.0):
        self.now, self.setup, self.started = 1000.0, setup, False

    def __call__(self):
        value = self.now
        if not self.started:
            self.started = True
            self.now += self.setup
        return value


class _Tick(keras.callbacks.Callback):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_train_batch_begin(self, batch, logs=None):
        self.clock.now += 1.0


class _CrashAfterBudgetStop(keras.callbacks.Callback):
    """Fails after the built-in callbacks have backed up the stopped epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training:
            raise RuntimeError("simulated crash")


def _budgeted(seconds):
    return apply_overrides(BUDGETED, {"training.time_budget": seconds})


def _train_with_clock(recipe, output_dir, clock, callbacks=()):
    return train_recipe(recipe, output_dir, log=_quiet, verbose=0, clock=clock,
                        callbacks=[_Tick(clock), *callbacks])


@pytest.fixture(scope="module")
def budget_stopped(tmp_path_factory):
    """5 epochs of 4 steps and 8 seconds, 2 of them before training: 6 steps."""
    output_dir = tmp_path_factory.mktemp("budget") / "run"
    record = _train_with_clock(_budgeted(8), output_dir, _FakeClock(setup=2))
    return output_dir, record


def test_a_short_budget_stops_training_then_evaluates_and_saves(budget_stopped):
    from keras_attn.models import Generator

    output_dir, record = budget_stopped
    training = record["training"]
    assert training["stopped_by_budget"] is True
    assert training["steps"] == 6  # of 20: the first step ending at or past 8 s
    assert training["epochs"] == 1 and training["epochs_reached"] == 1.5
    assert training["time_budget"] == 8.0 and training["budget_seconds_spent"] == 8.0
    assert record["recipe"]["training"]["time_budget"] == 8.0
    saved = json.loads((output_dir / "metrics.json").read_text())
    assert saved["training"] == training and saved["metrics"]["perplexity"] > 1
    # The partial epoch is logged like any other.
    assert len((output_dir / "training_log.csv").read_text().splitlines()) == 3
    model = Generator.from_preset(str(output_dir / "preset"))
    assert isinstance(model.generate("abc", max_new_tokens=2), str)
    assert not (output_dir / "in_progress").exists()


def test_a_budget_never_reached_changes_nothing(trained_generator, tmp_path):
    _, unbudgeted, _ = trained_generator
    recipe = apply_overrides(TINY_GENERATOR, {"training.time_budget": 3600})
    record = train_recipe(recipe, tmp_path / "run", log=_quiet, verbose=0)
    budget_fields = ("time_budget", "budget_seconds_spent", "stopped_by_budget", "seconds")
    training = {k: v for k, v in record["training"].items() if k not in budget_fields}
    expected = {k: v for k, v in unbudgeted["training"].items() if k != "seconds"}
    assert training.keys() == expected.keys()
    for key, value in expected.items():  # final losses to float precision, the rest exactly
        assert training[key] == (pytest.approx(value, rel=1e-5)
                                 if isinstance(value, float) else value), key
    assert record["training"]["stopped_by_budget"] is False
    assert 0 < record["training"]["budget_seconds_spent"] < 3600
    assert record["metrics"]["perplexity"] == pytest.approx(
        unbudgeted["metrics"]["perplexity"], rel=1e-4)


def test_a_resumed_run_spends_only_what_is_left_of_the_budget(tmp_path):
    output_dir = tmp_path / "run"
    recipe = _budgeted(14)
    # Crashes at step 10, in the third epoch; the backup is from step 8 and so
    # are the seconds kept with it.
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train_with_clock(recipe, output_dir, _FakeClock(), [CrashAtStep(10)])
    state = json.loads((output_dir / "in_progress" / "backup" / "time_budget.json").read_text())
    assert state == {"seconds": 8.0, "epochs": 2.0, "time_budget": 14.0}
    # Rerun: 3 s to load the data again, then 3 steps leave the budget spent.
    record = _train_with_clock(recipe, output_dir, _FakeClock(setup=3))
    training = record["training"]
    assert training["resumed_at_epoch"] == 2
    assert training["steps"] == 11 and training["epochs_reached"] == 2.75
    assert training["budget_seconds_spent"] == 14.0 and training["stopped_by_budget"] is True
    log = (output_dir / "training_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["0", "1", "2"]


def test_a_run_whose_budget_is_spent_goes_straight_to_evaluating(budget_stopped, tmp_path):
    output_dir = tmp_path / "run"
    recipe = _budgeted(8)
    # Stops at step 6 like `budget_stopped`, backs up, then fails before saving.
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train_with_clock(recipe, output_dir, _FakeClock(setup=2), [_CrashAfterBudgetStop()])
    record = _train_with_clock(recipe, output_dir, _FakeClock(), [CrashAtStep(1)])
    training = record["training"]  # no step ran (one would have crashed)
    assert "resumed_at_epoch" not in training and "final_loss" not in training
    assert training["steps"] == 6 and training["epochs_reached"] == 1.5
    assert training["stopped_by_budget"] is True and training["budget_seconds_spent"] == 8.0
    # The model is the one the uninterrupted run saved.
    assert record["metrics"]["perplexity"] == pytest.approx(
        budget_stopped[1]["metrics"]["perplexity"], rel=1e-5)
    assert (output_dir / "preset" / "config.json").is_file()


def test_the_sentencepiece_section_reaches_the_tokenizer(tmp_path):
    from keras_attn.data import load_dataset
    from keras_attn.recipes.train import _build_tokenizer
    from keras_attn.tokenizers import SentencePieceTokenizer, Tokenizer

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"Save file {i} (Ctrl+S).\tDatei {i} speichern (Strg+S).\n"
                             for i in range(40)), encoding="utf-8")
    data = load_dataset({"source": "files", "path": str(pairs)}, "translation")
    spec = {"type": "sentencepiece", "vocabulary_size": 300, "model_type": "bpe",
            "character_coverage": 1.0}
    lines = []
    tokenizer = _build_tokenizer({"tokenizer": spec}, data, str(tmp_path / "work"), lines.append)
    expected = SentencePieceTokenizer.train(
        data.sources + data.targets, 300, model_type="bpe", character_coverage=1.0
    )
    assert tokenizer.proto == expected.proto
    assert lines[0].startswith("tokenizer: sentencepiece, ") and "trained" in lines[0]
    # A rerun of the unfinished run reads the saved one back.
    again = _build_tokenizer({"tokenizer": spec}, data, str(tmp_path / "work"), lines.append)
    assert isinstance(again, SentencePieceTokenizer) and again.proto == tokenizer.proto
    assert isinstance(Tokenizer.from_directory(str(tmp_path / "work" / "tokenizer")),
                      SentencePieceTokenizer)


def test_a_translator_on_your_own_pairs_gets_a_lossless_tokenizer(tmp_path):
    from keras_attn.models import Translator
    from keras_attn.tokenizers import SentencePieceTokenizer

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"Save  file {i} (Ctrl+S).\tDatei {i} speichern (Strg+S).\n"
                             for i in range(80)), encoding="utf-8")
    recipe = {
        "task": "translator",
        "preset": "tiny",
        "model": {"source_length": 32, "target_length": 32, "num_encoder_layers": 1,
                  "num_decoder_layers": 1, "hidden_dim": 32},
        "data": {"train": {"source": "files", "path": str(pairs)}, "test": {"from_train": 0.1}},
        "training": {"epochs": 1, "batch_size": 32, "tensorboard": False},
        "evaluation": {"bleu": False},
    }
    lines = []
    record = train_recipe(recipe, tmp_path / "run", log=lines.append, verbose=0)
    assert record["recipe"]["tokenizer"] == {"type": "sentencepiece", "vocabulary_size": 4000}
    assert any(line.startswith("tokenizer: sentencepiece, ") for line in lines)
    model = Translator.from_preset(str(tmp_path / "run" / "preset"))
    tokenizer = model.source_tokenizer
    assert isinstance(tokenizer, SentencePieceTokenizer)
    assert 263 < tokenizer.vocabulary_size <= 4000
    text = "Datei 7 speichern  (Strg+S)."
    assert tokenizer.detokenize(tokenizer.tokenize(text)).numpy().decode() == text


# ------------------------------------------------- keras-hub checkpoints

SENTIMENT_WORDS = (
    "acting awful bad boring dull ending excellent film fun good great movie not plot poor "
    "quite really show superb terrible the this very was wonderful"
).split()


def _randomize(model, seed):
    """Weights far from any initializer's, so a model that did not start from
    the checkpoint cannot pass for one that did."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.2, weight.shape).astype(weight.dtype))


@pytest.fixture(scope="module")
def keras_hub_presets(tmp_path_factory):
    """A small GPT-2 causal LM and BERT classifier with random weights, each
    written by keras-hub's `save_to_preset` (as a downloaded preset is)."""
    import keras_hub
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    root = tmp_path_factory.mktemp("keras_hub_presets")
    keras.utils.set_random_seed(5)
    vocabulary = {symbol: index for index, symbol in enumerate(bytes_to_unicode()[1])}
    merges = ["a b", "c d"]
    vocabulary.update({"ab": len(vocabulary), "cd": len(vocabulary) + 1})
    vocabulary["<|endoftext|>"] = len(vocabulary)
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
    gpt2 = keras_hub.models.GPT2CausalLM(
        keras_hub.models.GPT2Backbone(
            vocabulary_size=len(vocabulary), num_layers=1, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=32,
        ),
        preprocessor=keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=16),
    )
    _randomize(gpt2, 0)
    gpt2.save_to_preset(str(root / "gpt2"))
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *SENTIMENT_WORDS]
    bert = keras_hub.models.BertTextClassifier(
        keras_hub.models.BertBackbone(
            vocabulary_size=len(words), num_layers=1, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=32,
        ),
        num_classes=2,
        preprocessor=keras_hub.models.BertTextClassifierPreprocessor(
            keras_hub.models.BertTokenizer(vocabulary=words, lowercase=True), sequence_length=32
        ),
    )
    _randomize(bert, 1)
    bert.save_to_preset(str(root / "bert"))
    return {"gpt2": str(root / "gpt2"), "bert": str(root / "bert")}


def _hub_recipe(task, preset, **changes):
    data = {
        "generator": {"train": {"source": "builtin", "name": "alphabet_runs", "num_examples": 32}},
        "classifier": {
            "train": {"source": "builtin", "name": "sentiment_negation", "num_examples": 32},
            "test": {"source": "builtin", "name": "sentiment_negation", "num_examples": 8},
        },
    }[task]
    return {
        "task": task,
        "preset": f"keras_hub:{preset}",
        "model": {"sequence_length": 16, "dropout": 0.0},
        "data": data,
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3,
                     "jit_compile": False, "tensorboard": False},
        **changes,
    }


class _KeepModel(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.trained = self.model


# Two Adam updates at a learning rate of 1e-3 move a dense weight by about
# 2e-3 (an embedding a few times that: TensorFlow's sparse gradients repeat
# rows); a model that did not start from the checkpoint (weights of scale
# 0.2) would be off by far more.
CHECKPOINT_DISTANCE = 0.05


@pytest.mark.parametrize("task, family", [("generator", "gpt2"), ("classifier", "bert")])
def test_a_keras_hub_checkpoint_fine_tunes_through_a_recipe(keras_hub_presets, task, family,
                                                            tmp_path):
    from keras_attn.models import Task

    cls = Task.for_name(task)
    hub_dir = keras_hub_presets[family]
    keep = _KeepModel()
    lines = []
    record = train_recipe(_hub_recipe(task, hub_dir), tmp_path / "run", log=lines.append,
                          verbose=0, callbacks=[keep])
    assert record["training"]["steps"] == 2  # 32 examples, batches of 16
    assert record["preset"] == f"keras_hub:{hub_dir}"
    assert "tokenizer" not in record["recipe"]  # the checkpoint's own
    assert any("converted from keras-hub" in line for line in lines)
    reloaded = cls.from_preset(str(tmp_path / "run" / "preset"))
    assert reloaded.backbone.sequence_length == 16
    # Overrides of the recipe's `model:` (the checkpoints' dropout is 0.1).
    owner = reloaded if task == "classifier" else reloaded.backbone
    assert owner.get_config()["dropout"] == 0.0
    texts = ["abcdef", "not bad"]
    inputs = reloaded.texts_to_inputs(texts).inputs
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(keep.trained(inputs)),
        keras.ops.convert_to_numpy(reloaded(inputs)),
    )
    # Trained from the checkpoint: two Adam updates away from its weights.
    converted = cls.from_keras_hub(hub_dir, **_hub_arguments(task, reloaded))
    assert type(reloaded.tokenizer) is type(converted.tokenizer)
    np.testing.assert_equal(inputs, converted.texts_to_inputs(texts).inputs)
    backbone_moves = [
        np.abs(keras.ops.convert_to_numpy(ours) - keras.ops.convert_to_numpy(theirs)).max()
        for ours, theirs in zip(reloaded.backbone.weights, converted.backbone.weights,
                                strict=True)
    ]
    assert 0 < max(backbone_moves) < CHECKPOINT_DISTANCE
    if task == "classifier":
        assert reloaded.num_classes == 2
        assert reloaded.label_names == ["negative", "positive"]
        assert record["metrics"]["examples"] == 8


def _hub_arguments(task, model):
    arguments = {"sequence_length": 16}
    if task == "classifier":
        arguments["num_classes"] = model.num_classes
    return arguments


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"num_layers": 2}},
         r"model\.num_layers: is not an option of a keras-hub checkpoint's conversion into a "
         r"classifier.*\(known: dropout, label_names, num_classes, pooling, sequence_length\)"),
        ({"tokenizer": {"type": "byte"}},
         r"tokenizer: does not apply to a keras_hub: preset \('bert_base_en_uncased' brings "
         r"its checkpoint's tokenizer\): drop this section"),
        ({"preset": "keras_hub:"}, r"preset: keras_hub: must be followed by a keras-hub preset"),
    ],
)
def test_keras_hub_recipes_refuse_what_the_checkpoint_decides(tmp_path, change, message):
    recipe = {**_hub_recipe("classifier", "bert_base_en_uncased"), **change}
    with pytest.raises(ValueError, match=rf"hub\.yaml: {message}"):
        load_recipe(_write(tmp_path, recipe, "hub.yaml"))


def test_a_keras_hub_preset_directory_is_taken_from_the_recipe_folder(tmp_path):
    (tmp_path / "checkpoints" / "bert").mkdir(parents=True)
    recipe = {**_hub_recipe("classifier", "checkpoints/bert"), "model": {}}
    loaded = load_recipe(_write(tmp_path, recipe))
    assert loaded["preset"] == f"keras_hub:{tmp_path / 'checkpoints' / 'bert'}"
    assert "tokenizer" not in with_defaults(loaded)


def test_a_checkpoint_of_another_task_is_refused_naming_the_families(keras_hub_presets,
                                                                     tmp_path):
    recipe = _hub_recipe("classifier", keras_hub_presets["gpt2"])
    with pytest.raises(ValueError, match=r"^preset: keras_hub:.*gpt2: Classifier\.from_keras_hub "
                                         r"converts BertBackbone, DistilBertBackbone"):
        train_recipe(recipe, tmp_path / "run", log=_quiet, verbose=0)


def test_a_preset_name_that_cannot_download_is_one_cli_error_line(tmp_path, monkeypatch,
                                                                  capsys):
    from keras_attn.cli import main

    # No way out whether or not this machine has the internet: a closed
    # local port as the proxy, and an empty download cache.
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    recipe = _write(tmp_path, _hub_recipe("classifier", "bert_base_en_uncased"))
    code = main(["train", recipe, "--output-dir", str(tmp_path / "run"), "--verbose", "0"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(error) == 1, error
    assert error[0].startswith(
        "keras-attn train: error: keras-hub could not load the backbone of preset "
        "'bert_base_en_uncased': "
    )
    assert "needs the internet" in error[0]


def test_a_translators_evaluation_decodes_with_the_repetition_controls():
    from keras_attn.data import load_builtin
    from keras_attn.models import Translator
    from keras_attn.recipes.evaluation import check_evaluation_options

    keras.utils.set_random_seed(3)
    model = Translator.from_preset("tiny", source_length=16, target_length=12,
                                   num_encoder_layers=1, num_decoder_layers=1)
    data = load_builtin("number_words", num_examples=8)
    options = check_evaluation_options(
        {"no_repeat_ngram_size": 1, "repetition_penalty": 1.5, "samples": 8, "bleu": False},
        "translator")
    _, samples = model.evaluate_data(data, options)
    expected = model.translate(list(data.sources), no_repeat_ngram_size=1, repetition_penalty=1.5)
    assert [sample.split(" -> ")[1].split(" (reference")[0] for sample in samples] == [
        repr(text) for text in expected]
    # This untrained model's greedy outputs repeat bytes ("EEEEEEEEEEE"), which
    # no_repeat_ngram_size=1 forbids: the options changed the decoding.
    assert model.translate(list(data.sources)) != expected
    with pytest.raises(ValueError, match=r"evaluation\.no_repeat_ngram_size: applies to "
                                         r"translator recipes only"):
        check_evaluation_options({"no_repeat_ngram_size": 2}, "generator")
