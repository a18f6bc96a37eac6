"""Callbacks that make a `model.fit` run resumable, checkpointed, logged and
bounded in wall-clock time."""

import json
import math
import os
import time

import keras

from keras_attn.utils.arguments import check_choice, check_number_in_range
from keras_attn.utils.atomic_files import write_json_atomically

BACKUP_DIR = "backup"
CHECKPOINT_FILE = "checkpoint.weights.h5"
LOG_FILE = "training_log.csv"
TENSORBOARD_DIR = "tensorboard"
# These live inside the backup folder, so they are deleted with it when a run
# completes and always describe the training state the backup restores.
BEST_STATE_FILE = "checkpoint_best.json"
TIME_BUDGET_FILE = "time_budget.json"


def check_time_budget(name, value):
    """Raises unless `value` is a finite number of seconds > 0; returns a `float`."""
    return check_number_in_range(
        name, value, 0, math.inf, include_low=False, include_high=False,
        expected="a positive number of seconds",
    )


class TimeBudget(keras.callbacks.Callback):
    """Stops `fit` at the first step that ends past a wall-clock budget.

    After every training step (`on_train_batch_end`) the callback compares the
    seconds spent with `seconds` and, once they are reached, sets
    `model.stop_training`. Keras then leaves the epoch after that step, still
    runs validation and `on_epoch_end` for the partial epoch (so
    `BackupAndRestore`, checkpoints and the CSV log see it), and ends `fit`
    normally: nothing of the work done is lost. A step is never cut short, so
    a run ends at most one step (plus the partial epoch's validation) after
    the budget; a budget already spent when `fit` begins still lets the first
    step run.

    The clock starts at `started` (a reading of `clock`; default: when `fit`
    begins), so time spent before `fit` (data loading, tokenizer training)
    can count. With `state_path`, the seconds spent and the epochs reached
    are written there (atomically) after every epoch and read back when the
    callback is made, so a resumed run spends only what is left: put it
    inside the `BackupAndRestore` folder, after the backup in the callback
    list, and it always describes the state the backup restores (time spent
    after the last backup is lost with the work it did).

    Args:
        seconds: the budget, a positive number of seconds.
        state_path: JSON file of the seconds already spent, or `None`.
        clock: the time function, in seconds (tests pass a fake one).
        started: the `clock()` reading the budget counts from, or `None`.

    Attributes:
        spent: seconds counted so far, earlier runs' included.
        exhausted: whether `spent` has reached `seconds`.
        stopped: whether this callback ended the run before its last epoch.
        epochs_reached: epochs trained, the partial last one as a fraction
            of its steps (e.g. `2.5`).

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x, y = np.ones((64, 4)), np.ones((64, 1))
    >>> budget = TimeBudget(60.0)  # one minute of training at most
    >>> history = model.fit(x, y, epochs=2, callbacks=[budget], verbose=0)
    >>> budget.stopped, budget.epochs_reached
    (False, 2.0)
    """

    def __init__(self, seconds, state_path=None, clock=time.monotonic, started=None):
        super().__init__()
        self.seconds = check_time_budget("seconds", seconds)
        if state_path is not None and not isinstance(state_path, (str, os.PathLike)):
            raise ValueError(
                f"`state_path` must be a path or None. Received: state_path={state_path!r}"
            )
        if not callable(clock):
            raise ValueError(f"`clock` must be a function returning seconds. Received: "
                             f"clock={clock!r}")
        self.state_path = None if state_path is None else os.fspath(state_path)
        self.clock = clock
        self.started = started
        self.spent_before = 0.0
        self.epochs_reached = 0.0
        if self.state_path is not None and os.path.isfile(self.state_path):
            with open(self.state_path, encoding="utf-8") as handle:
                state = json.load(handle)
            self.spent_before = float(state["seconds"])
            self.epochs_reached = float(state["epochs"])
        self.stopped = False
        self._epoch = None
        self._batches = 0
        self._epoch_steps = None

    @property
    def spent(self):
        if self.started is None:
            return self.spent_before
        return self.spent_before + (self.clock() - self.started)

    @property
    def remaining(self):
        return max(0.0, self.seconds - self.spent)

    @property
    def exhausted(self):
        return self.spent >= self.seconds

    def on_train_begin(self, logs=None):
        if self.started is None:
            self.started = self.clock()
        self.stopped = False

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._batches = 0

    def _steps_per_epoch(self):
        return (self.params or {}).get("steps") or self._epoch_steps

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1  # with steps_per_execution, `batch` is the last step run
        if self.model.stop_training or not self.exhausted:
            return
        steps = self._steps_per_epoch()
        last_epoch = self._epoch == (self.params or {}).get("epochs", 0) - 1
        if last_epoch and steps is not None and self._batches >= steps:
            return  # the run ends here anyway
        self.model.stop_training = True
        self.stopped = True

    def on_epoch_end(self, epoch, logs=None):
        steps = self._steps_per_epoch()
        if self.stopped and steps and self._batches < steps:
            self.epochs_reached = epoch + self._batches / steps
        elif self.stopped and not steps:
            self.epochs_reached = float(epoch)  # a partial epoch of unknown length
        else:
            self.epochs_reached = float(epoch + 1)
            self._epoch_steps = self._batches
        if self.state_path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(self.state_path)), exist_ok=True)
            write_json_atomically(self.state_path, {
                "seconds": self.spent, "epochs": self.epochs_reached, "time_budget": self.seconds,
            })


class ResumableModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` whose best value survives an interrupted run.

    `BackupAndRestore` restores the weights, the optimizer and the epoch of an
    interrupted run, but a fresh `ModelCheckpoint` starts with no best value,
    so with `save_best_only=True` its first epoch after a resume would
    overwrite a better checkpoint. This one writes its monitor and best value
    to `state_path` after every epoch and reads them back when training
    begins.

    With `monitor=None` the monitor is `"val_loss"` if the first epoch's logs
    have it, else `"loss"`.

    Args:
        filepath: where to write the weights (must end in `.weights.h5`).
        state_path: JSON file holding the monitor and best value.
        monitor: name of the logged value to watch, or `None` (see above).
        save_best_only: only overwrite the file when `monitor` improves.
        mode: `"auto"`, `"min"` or `"max"`.

    Example:
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> model.compile(loss="mse", optimizer="sgd", jit_compile=False)
    >>> x, y = np.ones((4, 1)), np.zeros((4, 1))
    >>> checkpoint = ResumableModelCheckpoint(
    ...     "best.weights.h5", "state/best.json", save_best_only=True)
    >>> _ = model.fit(x, y, epochs=2, callbacks=[checkpoint], verbose=0)
    >>> resumed = ResumableModelCheckpoint(  # a rerun, after an interruption
    ...     "best.weights.h5", "state/best.json", save_best_only=True)
    >>> resumed.on_train_begin()
    >>> resumed.monitor, resumed.best == checkpoint.best
    ('loss', True)
    """

    def __init__(self, filepath, state_path, monitor=None, save_best_only=False, mode="auto"):
        super().__init__(
            filepath,
            monitor=monitor or "val_loss",
            save_best_only=save_best_only,
            save_weights_only=True,
            mode=mode,
        )
        self.state_path = state_path
        self.auto_monitor = monitor is None

    def on_train_begin(self, logs=None):
        if os.path.isfile(self.state_path):
            with open(self.state_path) as f:
                state = json.load(f)
            self.monitor = state["monitor"]
            self.best = state["best"]
            self.auto_monitor = False

    def on_epoch_end(self, epoch, logs=None):
        if self.auto_monitor:
            self.monitor = "val_loss" if "val_loss" in (logs or {}) else "loss"
            self.auto_monitor = False
        super().on_epoch_end(epoch, logs)
        if self.save_best_only and self.best is not None:
            os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
            with open(self.state_path, "w") as f:
                json.dump({"monitor": self.monitor, "best": float(self.best)}, f)


def training_callbacks(
    output_dir,
    monitor=None,
    save_best_only=False,
    csv_log=True,
    tensorboard=False,
    mode="auto",
    time_budget=None,
    clock=time.monotonic,
    started=None,
):
    """Callbacks for a `model.fit` that can be interrupted and rerun.

    Everything goes under `output_dir`:

    - `backup/`: a `keras.callbacks.BackupAndRestore` snapshot of the weights,
      optimizer state and epoch, written after every epoch. Rerunning the same
      `fit` with callbacks for the same `output_dir` (a fresh model of the same
      architecture is fine) resumes after the last finished epoch. The folder
      is deleted when a run completes.
    - `checkpoint.weights.h5`: the model weights (`model.load_weights`),
      after every epoch, or only when `monitor` improves with
      `save_best_only=True`.
    - `training_log.csv`: one row per epoch (`keras.callbacks.CSVLogger`),
      appended to across resumed runs.
    - `tensorboard/`: TensorBoard logs, when asked.
    - with `time_budget`: a `TimeBudget` callback (right after the backup)
      that stops training at the first step past the budget and keeps the
      seconds spent in `backup/time_budget.json`, so a resumed run spends
      only what is left of the budget.

    The model must be built before `fit` (e.g. it has an `Input`), so the
    backup can be loaded into it.

    Args:
        output_dir: folder for all outputs, created if needed.
        monitor: logged value that decides the best checkpoint; `None` uses
            `"val_loss"` when there is validation data, else `"loss"`.
        save_best_only: keep only the best checkpoint instead of the latest.
        csv_log: add the CSV logger.
        tensorboard: add a TensorBoard callback.
        mode: `"auto"`, `"min"` or `"max"`, whether `monitor` should fall or
            rise (`"auto"` knows losses and the keras-attn / Keras metrics).
        time_budget: seconds of wall-clock time for the whole run (resumes
            included), or `None` for no limit.
        clock: the time function of the budget (`TimeBudget`).
        started: the `clock()` reading the budget counts from (default: when
            `fit` begins), e.g. taken before loading the data.

    Returns:
        A list of callbacks for `model.fit(..., callbacks=...)`, backup first.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x, y = np.ones((8, 4)), np.ones((8, 1))
    >>> callbacks = training_callbacks("runs/demo", save_best_only=True)
    >>> history = model.fit(x, y, epochs=2, callbacks=callbacks, verbose=0)  # rerun: resumes
    >>> sorted(os.listdir("runs/demo"))  # `backup/` is gone once `fit` completes
    ['checkpoint.weights.h5', 'training_log.csv']
    """
    if not isinstance(output_dir, (str, os.PathLike)):
        raise ValueError(f"`output_dir` must be a path. Received: output_dir={output_dir!r}")
    output_dir = os.fspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(
            "`output_dir` must be a folder, or a path where one can be created; it is an "
            f"existing file. Received: output_dir={output_dir!r}"
        )
    if monitor is not None and (not isinstance(monitor, str) or not monitor):
        raise ValueError(
            f"`monitor` must be a logged metric name or None. Received: monitor={monitor!r}"
        )
    check_choice("mode", mode, ("auto", "min", "max"))
    if time_budget is not None:
        time_budget = check_time_budget("time_budget", time_budget)
    os.makedirs(output_dir, exist_ok=True)
    backup_dir = os.path.join(output_dir, BACKUP_DIR)
    callbacks = [keras.callbacks.BackupAndRestore(backup_dir)]
    if time_budget is not None:
        # After the backup, so its state is written just after the backup's.
        callbacks.append(TimeBudget(time_budget, os.path.join(backup_dir, TIME_BUDGET_FILE),
                                    clock=clock, started=started))
    callbacks += [
        ResumableModelCheckpoint(
            os.path.join(output_dir, CHECKPOINT_FILE),
            state_path=os.path.join(backup_dir, BEST_STATE_FILE),
            monitor=monitor,
            save_best_only=bool(save_best_only),
            mode=mode,
        ),
    ]
    if csv_log:
        callbacks.append(keras.callbacks.CSVLogger(os.path.join(output_dir, LOG_FILE), append=True))
    if tensorboard:
        callbacks.append(
            keras.callbacks.TensorBoard(log_dir=os.path.join(output_dir, TENSORBOARD_DIR))
        )
    return callbacks
