"""Callbacks that make a `model.fit` run resumable, checkpointed and logged."""

import json
import os

import keras

from keras_attn.utils.arguments import check_choice

BACKUP_DIR = "backup"
CHECKPOINT_FILE = "checkpoint.weights.h5"
LOG_FILE = "training_log.csv"
TENSORBOARD_DIR = "tensorboard"
# Lives inside the backup folder, so it is deleted with it when a run completes.
BEST_STATE_FILE = "checkpoint_best.json"


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
    os.makedirs(output_dir, exist_ok=True)
    backup_dir = os.path.join(output_dir, BACKUP_DIR)
    callbacks = [
        keras.callbacks.BackupAndRestore(backup_dir),
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
