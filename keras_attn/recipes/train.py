"""`train_recipe`: a recipe in, a trained model, its logs and its scores out.

The output directory after a finished run:

    preset/             the model (Model.from_preset(path) loads it)
    training_log.csv    one row per epoch
    tensorboard/        TensorBoard logs (when tensorboard is installed)
    metrics.json        test metrics, steps / epochs / seconds reached, wall
                        time, machine, the recipe as run

While a run is under way everything lives in `in_progress/` (the
`keras_attn.training.training_callbacks` backup, log and checkpoint, the
trained tokenizer and the recipe): rerunning the same recipe into the same
directory resumes after the last finished epoch. Results replace earlier
ones only once the run has finished, so a failed run leaves them intact.

With `training.time_budget` the run's seconds count from its start (data
loading and the tokenizer's training included); training stops at the first
step past the budget and the model is evaluated and saved as usual. The
seconds spent are kept with the backup (`in_progress/backup/time_budget.json`),
so a resumed run spends what is left, and one whose budget is already spent
goes straight to evaluating and saving.
"""

import copy
import importlib.util
import json
import math
import os
import platform
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_attn.models import Task
from keras_attn.recipes.distribution import WORKERS_DIR, make_strategy, worker_role
from keras_attn.recipes.evaluation import METRICS_FILE, PRESET_DIR, describe, evaluate_task
from keras_attn.recipes.recipe_data import load_recipe_data
from keras_attn.recipes.schema import (
    KERAS_HUB_PREFIX,
    keras_hub_preset,
    load_recipe,
    validate_recipe,
    with_defaults,
)
from keras_attn.tokenizers import (
    ByteTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordPieceTokenizer,
)
from keras_attn.training import InverseSquareRootSchedule, training_callbacks
from keras_attn.training.callbacks import BACKUP_DIR, LOG_FILE, TENSORBOARD_DIR, TimeBudget
from keras_attn.training.compilation import resolve_jit_compile
from keras_attn.training.precision import resolve_precision
from keras_attn.utils.atomic_files import replace_path, write_json_atomically
from keras_attn.version import __version__

IN_PROGRESS_DIR = "in_progress"
RECIPE_FILE = "recipe.json"
TOKENIZER_DIR = "tokenizer"


def _training_texts(data):
    if hasattr(data, "sources"):
        return list(data.sources) + list(data.targets)
    return list(data.texts)


# ------------------------------------------------------------ model parts


def _build_tokenizer(recipe, train, work, log):
    path = os.path.join(work, TOKENIZER_DIR)
    if os.path.isfile(os.path.join(path, "tokenizer.json")):
        tokenizer = Tokenizer.from_directory(path)
        log(f"tokenizer: {type(tokenizer).__name__} of the unfinished run "
            f"({tokenizer.vocabulary_size} ids)")
        return tokenizer
    spec = recipe["tokenizer"]
    started = time.perf_counter()
    try:
        if spec["type"] == "word_piece":
            tokenizer = WordPieceTokenizer.train(
                _training_texts(train),
                spec["vocabulary_size"],
                lowercase=spec.get("lowercase", True),
                strip_accents=spec.get("strip_accents", False),
            )
        elif spec["type"] == "sentencepiece":
            options = {key: spec[key] for key in ("model_type", "character_coverage")
                       if key in spec}
            tokenizer = SentencePieceTokenizer.train(
                _training_texts(train), spec["vocabulary_size"], **options
            )
        else:
            tokenizer = ByteTokenizer()
    except ValueError as error:
        raise ValueError(f"tokenizer: {error}") from None
    tokenizer.save(path)
    trained = (f", trained on the training texts in {time.perf_counter() - started:.0f}s"
               if spec["type"] != "byte" else "")
    log(f"tokenizer: {spec['type']}, {tokenizer.vocabulary_size} ids{trained}")
    return tokenizer


def _build_from_keras_hub(cls, hub_preset, overrides, log):
    """`cls.from_keras_hub(hub_preset, **overrides)`: a keras-hub checkpoint,
    converted with its own tokenizer."""
    try:
        model = cls.from_keras_hub(hub_preset, **overrides)
    except TypeError as error:
        # A family's converter that does not take one of the generator's options.
        raise ValueError(f"model: {hub_preset!r}: {error}") from None
    except ValueError as error:
        raise ValueError(f"preset: {KERAS_HUB_PREFIX}{hub_preset}: {error}") from None
    # OSError (keras-hub could not load or download the checkpoint) as is: one line.
    log(f"model: {cls.__name__} converted from keras-hub {hub_preset!r} (its own tokenizer, "
        f"{model.tokenizer.vocabulary_size} ids), {model.count_params():,} parameters")
    return model


def _build_model(recipe, train, work, log):
    preset = recipe["preset"]
    cls = Task.for_name(recipe["task"])
    hub_preset = keras_hub_preset(preset)
    if hub_preset is not None:
        overrides = {**cls.arguments_for_data(train), **recipe["model"]}
        return _build_from_keras_hub(cls, hub_preset, overrides, log)
    if os.path.isdir(preset):
        model = cls.from_preset(preset)
        log(f"model: {cls.__name__} from {preset} (its own tokenizer)")
        try:
            model.check_fits_data(train)
        except ValueError as error:
            raise ValueError(f"preset: {preset!r}: {error}") from None
        return model
    tokenizer = _build_tokenizer(recipe, train, work, log)
    overrides = {**cls.arguments_for_data(train), **recipe["model"]}
    try:
        model = cls.from_preset(preset, tokenizer=tokenizer, **overrides)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model: {error}") from None
    log(f"model: {cls.__name__} {preset!r}, {model.count_params():,} parameters")
    return model


def _learning_rate(training, model, steps):
    schedule = training["schedule"]
    peak = training.get("learning_rate", 1e-3)
    if schedule["type"] == "inverse_sqrt":
        return InverseSquareRootSchedule(
            model.backbone.hidden_dim, schedule["warmup_steps"], schedule.get("scale", 1.0)
        )
    if schedule["type"] == "cosine":
        warmup = schedule.get("warmup_steps", 0)
        decay = schedule.get("decay_steps") or max(1, steps - warmup)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else peak,
            decay,
            alpha=schedule.get("alpha", 0.0),
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    return peak


def _compile(model, training, steps, jit_compile):
    """The task's own loss and metrics, with the recipe's optimizer."""
    settings = training["optimizer"]
    arguments = dict(
        learning_rate=_learning_rate(training, model, steps),
        beta_1=settings["beta_1"],
        beta_2=settings["beta_2"],
        epsilon=settings["epsilon"],
        clipnorm=settings.get("clipnorm"),
    )
    if settings["type"] == "adamw":
        optimizer = keras.optimizers.AdamW(weight_decay=settings.get("weight_decay", 0.004),
                                           **arguments)
    else:
        optimizer = keras.optimizers.Adam(**arguments)
    model.compile(optimizer=optimizer, label_smoothing=training["label_smoothing"],
                  jit_compile=jit_compile)


# -------------------------------------------------------------- the run


def machine_info():
    """Where a run ran: platform, CPU count, accelerators and library versions.

    Example:
    >>> info = machine_info()
    >>> sorted(info)
    ['accelerators', 'cpu_count', 'keras', 'keras_attn', 'machine', 'platform', 'python',
     'tensorflow']
    >>> info["keras_attn"] == keras_attn.__version__, info["keras"] == keras.__version__
    (True, True)
    """
    accelerators = []
    for device in tf.config.list_physical_devices("GPU") + tf.config.list_physical_devices("TPU"):
        details = tf.config.experimental.get_device_details(device) if "GPU" in device.name else {}
        accelerators.append(details.get("device_name", device.name))
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "accelerators": accelerators,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_attn": __version__,
    }


def _resume_key(recipe):
    """What must not change for a run to resume: what shapes the training,
    epochs and the time budget aside (more of either continues it), and the
    strategy (the backup is the same whatever trained it)."""
    key = {k: v for k, v in recipe.items() if k not in ("description", "evaluation",
                                                        "requires", "expected")}
    key = copy.deepcopy(key)
    key.get("training", {}).pop("epochs", None)
    key.get("training", {}).pop("time_budget", None)
    key.get("training", {}).pop("strategy", None)
    return key


def _has_progress(work):
    """Whether an unfinished run got as far as a finished epoch."""
    return any(
        os.path.exists(os.path.join(work, name)) for name in (BACKUP_DIR, LOG_FILE, PRESET_DIR)
    )


def _prepare_output_dir(output_dir, recipe, overwrite, log):
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output directory {output_dir!r} is an existing file")
    if os.path.isfile(os.path.join(output_dir, METRICS_FILE)) and not overwrite:
        raise ValueError(
            f"output directory {output_dir!r} holds a finished run ({METRICS_FILE}); pass "
            "--overwrite (overwrite=True) to train again and replace it, or choose another "
            "directory"
        )
    work = os.path.join(output_dir, IN_PROGRESS_DIR)
    recipe_path = os.path.join(work, RECIPE_FILE)
    if os.path.isdir(work) and not _has_progress(work):
        # A run that failed before its first epoch leaves nothing worth keeping.
        shutil.rmtree(work)
    if os.path.isfile(recipe_path):
        with open(recipe_path, encoding="utf-8") as handle:
            previous = json.load(handle)
        if _resume_key(previous) == _resume_key(recipe):
            log(f"resuming the unfinished run in {work}")
        elif overwrite:
            log(f"discarding the unfinished run of another recipe in {work}")
            shutil.rmtree(work)
        else:
            raise ValueError(
                f"output directory {output_dir!r} holds an unfinished run of a different "
                f"recipe ({work}); pass --overwrite (overwrite=True) to discard it, or choose "
                "another directory"
            )
    elif os.path.isdir(work) and os.listdir(work):
        if not overwrite:
            raise ValueError(
                f"{work!r} exists but holds no {RECIPE_FILE}; pass --overwrite to discard it"
            )
        shutil.rmtree(work)
    os.makedirs(work, exist_ok=True)
    write_json_atomically(recipe_path, recipe)
    return work


def _auto_verbose():
    return 1 if sys.stdout.isatty() else 2


def train_recipe(recipe, output_dir, overwrite=False, log=print, verbose="auto", callbacks=None,
                 clock=time.monotonic):
    """Trains and scores the model a recipe describes; returns its record.

    Sets the precision policy and seed, loads the data
    (`keras_attn.data.load_dataset`), builds the tokenizer and the model,
    compiles it (`training.jit_compile`), fits it with
    `keras_attn.training.training_callbacks` (an interrupted run resumes when
    rerun into the same directory), scores it on the test split and writes
    `preset/`, `training_log.csv`, `tensorboard/` and `metrics.json` into
    `output_dir` (see the module docstring). With `training.time_budget`,
    training stops at the first step past the budget (counted from the start
    of this call, plus what an interrupted run had spent).

    Args:
        recipe: a recipe file path or a recipe dict (`load_recipe`,
            `apply_overrides`).
        output_dir: where the results go; created if needed.
        overwrite: replace a finished run in `output_dir`.
        log: where progress lines go.
        verbose: `model.fit` verbosity; `"auto"`: a progress bar on a
            terminal, one line per epoch otherwise.
        callbacks: more Keras callbacks for `fit`, after the built-in ones.
        clock: the time function of `training.time_budget`, in seconds
            (tests pass a fake one).

    Returns:
        The record written to `metrics.json`: `metrics` (the test scores and
        samples), `training` (examples; `steps`, the optimizer's updates;
        `epochs`, the epochs completed, and `epochs_reached`, with the
        partial last one as a fraction; `seconds` of `fit`; final losses;
        with a budget also `time_budget`, `budget_seconds_spent` and
        `stopped_by_budget`),
        `parameters`, `wall_time_seconds`, `machine`, `recipe` (with defaults
        filled in) and `expected` (the recipe's published figure, if any).

    Raises:
        ValueError: a bad recipe or data, or a finished run in `output_dir`
            without `overwrite`.
        OSError: data or output files that cannot be read or written.

    Example (two updates of a one-layer model, scored on 8 test examples):
    >>> recipe = {
    ...     "task": "generator", "preset": "tiny",
    ...     "model": {"sequence_length": 16, "num_layers": 1},
    ...     "data": {"train": {"source": "builtin", "name": "alphabet_runs", "num_examples": 32},
    ...              "test": {"source": "builtin", "name": "alphabet_runs", "num_examples": 8}},
    ...     "training": {"batch_size": 16, "jit_compile": False, "tensorboard": False},
    ...     "evaluation": {"prompt_length": 3, "continuation_length": 4}}
    >>> record = train_recipe(recipe, "run", log=lambda line: None, verbose=0)
    >>> record["training"]["steps"], record["metrics"]["examples"]
    (2, 8)
    >>> sorted(os.listdir("run"))
    ['metrics.json', 'preset', 'training_log.csv']
    """
    started = time.perf_counter()
    budget_started = clock()
    recipe_path = None
    if isinstance(recipe, (str, os.PathLike)):
        recipe_path = os.path.abspath(os.fspath(recipe))
        recipe = load_recipe(recipe)
    else:
        recipe = validate_recipe(recipe)
    plan = with_defaults(recipe)
    training = plan["training"]
    task = plan["task"]
    output_dir = os.path.abspath(os.fspath(output_dir))
    # Before anything else touches TensorFlow's runtime (multi-worker
    # collectives are configured when the strategy is made).
    strategy = make_strategy(training["strategy"])
    chief, worker = worker_role(strategy)
    if training["strategy"] != "default":
        log(f"strategy: {training['strategy']}, {strategy.num_replicas_in_sync} replicas"
            + (f" ({worker}{', chief' if chief else ''})" if worker else ""))
    if not chief:
        # TensorFlow's rule: every worker saves, only the chief where it lasts.
        output_dir = os.path.join(output_dir, WORKERS_DIR, worker)
    if training["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    work = _prepare_output_dir(output_dir, plan, overwrite, log)
    if plan["requires"]:
        log(f"requires: {', '.join(plan['requires'])}")
    machine = machine_info()
    if "accelerator" in plan["requires"] and not machine["accelerators"]:
        log("note: this recipe is sized for an accelerator and none was found; it will be slow")

    policy = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy(resolve_precision(training["precision"]))
        keras.utils.set_random_seed(training["seed"])
        data = load_recipe_data(plan, log)
        train = data["train"]
        trained_dir = os.path.join(work, PRESET_DIR)
        if os.path.isfile(os.path.join(trained_dir, "config.json")):
            model = Task.for_name(task).from_preset(trained_dir)
            log(f"model: trained by the unfinished run ({trained_dir}); skipping training")
            summary = _read_summary(work)
        else:
            with strategy.scope():
                model = _build_model(plan, train, work, log)
            summary = _fit(model, plan, data, work, log, verbose, callbacks or [],
                           clock, budget_started, strategy)
            model.save_to_preset(trained_dir, overwrite=True)
            write_json_atomically(os.path.join(work, "training.json"), summary)
        if training["strategy"] != "default":
            # Scored on one device, as the preset will be used: decoding runs
            # outside the strategy (and, on logical CPUs, outside XLA's reach).
            model = Task.for_name(task).from_preset(trained_dir)
        record = {
            "task": task,
            "preset": plan["preset"],
            "recipe_path": recipe_path,
            "parameters": model.count_params(),
            "training": summary,
        }
        if "test" in data:
            evaluation_started = time.perf_counter()
            record["metrics"] = evaluate_task(model, data["test"], plan["evaluation"])
            record["evaluation_seconds"] = round(time.perf_counter() - evaluation_started, 1)
            log(f"test: {describe(record['metrics'])} ({record['metrics']['examples']} "
                f"examples, {record['evaluation_seconds']:.0f}s)")
            for sample in record["metrics"]["samples"]:
                log(f"  {sample}")
        else:
            record["metrics"] = {}
        record["wall_time_seconds"] = round(time.perf_counter() - started, 1)
        record["machine"] = machine
        record["recipe"] = plan
        if plan.get("expected"):
            record["expected"] = plan["expected"]
        _publish(work, output_dir, record)
        if not chief:
            _remove_worker_dir(output_dir)
    finally:
        keras.config.set_dtype_policy(policy)
    log(f"saved to {output_dir} (preset/, training_log.csv, metrics.json); "
        f"{record['wall_time_seconds']:.0f}s in all")
    return record


def _remove_worker_dir(worker_dir):
    """A finished non-chief worker's copy goes; so does `workers/` once empty."""
    shutil.rmtree(worker_dir, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(worker_dir))
    except OSError:
        pass  # other workers are still at it


def _read_summary(work):
    path = os.path.join(work, "training.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _resumed_epoch(work):
    """The epoch an interrupted run's backup resumes at (0 without one)."""
    path = os.path.join(work, BACKUP_DIR, "training_metadata.json")
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as handle:
        return int(json.load(handle).get("epoch", 0))  # epochs finished


class _RandomState(keras.callbacks.Callback):
    """Keeps the model's random-seed states (dropout) with the backup, which
    holds only weights and optimizer: a resumed run draws the masks the
    uninterrupted one would have."""

    FILE = "random_state.npz"

    def __init__(self, backup_dir):
        super().__init__()
        self.path = os.path.join(backup_dir, self.FILE)

    def _states(self):
        weights = {id(v) for v in self.model.weights}
        return [v for v in self.model.variables if id(v) not in weights]

    def on_train_begin(self, logs=None):
        if os.path.isfile(self.path):
            with np.load(self.path) as saved:
                for i, variable in enumerate(self._states()):
                    variable.assign(saved[str(i)])

    def on_epoch_end(self, epoch, logs=None):
        if os.path.isdir(os.path.dirname(self.path)):  # the backup was written
            with open(self.path + ".tmp", "wb") as handle:
                np.savez(handle, **{str(i): keras.ops.convert_to_numpy(v)
                                    for i, v in enumerate(self._states())})
            os.replace(self.path + ".tmp", self.path)


def _build_for_strategy(model, strategy, train, batch_size):
    """Builds the optimizer and metrics of a model made under a strategy.

    Keras' `fit` and `evaluate` do it themselves from the first batch of
    their data, reduced across replicas: that reduction fails for mapping
    inputs under `MultiWorkerMirroredStrategy`, and the batch is drawn from
    the shuffled training data (one reshuffle more than a one-device run).
    Built here from an unshuffled batch, Keras' own step is skipped."""
    if getattr(model, "_distribute_strategy", None) is None:
        return  # made outside any strategy: Keras builds when it traces
    batch = next(iter(model.dataset_from_data(train, batch_size=batch_size, shuffle=False)))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Keras averages each step's logs across workers along axis 0, which
        # scalar losses and metrics do not have: they get one of length 1.
        for name in ("train_step", "test_step"):
            setattr(model, name, _with_replica_axis(getattr(model, name)))


def _with_replica_axis(step):
    def step_with_replica_axis(data):
        return tf.nest.map_structure(
            lambda value: value[None] if tf.is_tensor(value) and value.shape.rank == 0 else value,
            step(data),
        )

    return step_with_replica_axis


def _fit(model, plan, data, work, log, verbose, extra_callbacks, clock, budget_started,
         strategy):
    training = plan["training"]
    batch_size, seed = training["batch_size"], training["seed"]
    train = data["train"]
    bucketing = training["bucketing"]
    dataset = model.dataset_from_data(train, batch_size=batch_size, seed=seed,
                                      bucketing=bucketing)
    # The examples are reshuffled for every new iterator, from the seed. With
    # `steps_per_epoch` given, Keras makes one iterator per epoch (without it,
    # two), so a resumed run that first skips one per epoch already trained
    # sees the batches the uninterrupted run would have seen.
    batches = int(dataset.cardinality())
    steps_per_epoch = batches if batches > 0 else None
    for _ in range(_resumed_epoch(work)):
        iter(dataset)
    truncation = getattr(model, "last_truncation", None)
    validation = None
    if "validation" in data:
        validation = model.dataset_from_data(
            data["validation"], batch_size=batch_size, shuffle=False, seed=seed,
            bucketing=bucketing,
        )
    steps = max(1, batches if batches > 0 else len(train) // batch_size)
    jit_compile = resolve_jit_compile(training["jit_compile"], model.backbone.hidden_dim,
                                      model.backbone.dtype_policy.compute_dtype)
    local = strategy.extended.worker_devices if strategy.num_replicas_in_sync > 1 else ()
    if jit_compile and len(local) > 1 and all("CPU" in device.upper() for device in local):
        # XLA keeps a step on one CPU device, and cannot reach the variables
        # of the replicas on the others.
        log("note: no XLA for replicas on logical CPU devices (XLA cannot place variables "
            "across them)")
        jit_compile = False
    with strategy.scope():
        _compile(model, training, steps * training["epochs"], jit_compile)
    _build_for_strategy(model, strategy, train, batch_size)
    tensorboard = training["tensorboard"]
    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        log("note: tensorboard is not installed, so no tensorboard/ logs (pip install "
            "tensorboard)")
        tensorboard = False
    built_in = training_callbacks(work, tensorboard=tensorboard,
                                  time_budget=training.get("time_budget"), clock=clock,
                                  started=budget_started)
    budget = next((c for c in built_in if isinstance(c, TimeBudget)), None)
    callbacks = [*built_in[:1], _RandomState(os.path.join(work, BACKUP_DIR)), *built_in[1:],
                 *extra_callbacks]
    compiled = "XLA" if jit_compile else "no XLA"
    limit = f", at most {budget.seconds:g}s in all" if budget else ""
    replicas = strategy.num_replicas_in_sync
    split = f", {batch_size // replicas} per replica" if replicas > 1 else ""
    log(f"training: {training['epochs']} epochs of {steps} steps (batch {batch_size}{split}), "
        f"{keras.config.dtype_policy().name}, {compiled}"
        f"{', length buckets' if bucketing else ''}{limit}")
    started = time.perf_counter()
    history = None
    if budget is not None and budget.exhausted:
        # Not even one step: what the backup holds (if anything) is the result.
        log(f"training: the time budget is spent ({budget.spent:.0f}s of "
            f"{budget.seconds:g}s); evaluating and saving the model as it is")
        backup = built_in[0]
        backup.set_model(model)
        backup.on_train_begin()
        reached = budget.epochs_reached
        stopped = reached < training["epochs"]
    else:
        history = model.fit(
            dataset,
            validation_data=validation,
            epochs=training["epochs"],
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=_auto_verbose() if verbose == "auto" else verbose,
            shuffle=False,
        )
        if budget is not None:
            reached, stopped = budget.epochs_reached, budget.stopped
        else:
            reached, stopped = float(history.epoch[-1] + 1 if history.epoch
                                     else training["epochs"]), False
    summary = {
        "examples": len(train),
        "validation_examples": len(data["validation"]) if "validation" in data else None,
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "epochs": math.floor(reached),
        "epochs_reached": round(reached, 4),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if budget is not None:
        summary["time_budget"] = budget.seconds
        summary["budget_seconds_spent"] = round(budget.spent, 1)
        summary["stopped_by_budget"] = stopped
        if stopped:
            log(f"training: stopped by the time budget after {summary['steps']} steps "
                f"({reached:.2f} epochs, {budget.spent:.0f}s of {budget.seconds:g}s)")
    history_logs = history.history if history is not None else {}
    if history is not None and history.epoch and history.epoch[0] > 0:
        summary["resumed_at_epoch"] = history.epoch[0]
    for key, values in history_logs.items():
        if values and math.isfinite(float(values[-1])):
            summary[f"final_{key}"] = float(values[-1])
    if truncation is not None:
        summary["truncation"] = _truncation_dict(truncation)
    return summary


def _truncation_dict(truncation):
    if isinstance(truncation, dict):
        return {key: _truncation_dict(value) for key, value in truncation.items()}
    return truncation.as_dict() if hasattr(truncation, "as_dict") else str(truncation)


def _publish(work, output_dir, record):
    """Moves the finished run's files into place; metrics.json goes last."""
    for name in (PRESET_DIR, LOG_FILE, TENSORBOARD_DIR):
        if os.path.exists(os.path.join(work, name)):
            replace_path(os.path.join(work, name), os.path.join(output_dir, name))
    write_json_atomically(os.path.join(output_dir, METRICS_FILE), record)
    shutil.rmtree(work, ignore_errors=True)
