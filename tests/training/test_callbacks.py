import csv
import json
import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.training.callbacks import (
    ResumableModelCheckpoint,
    TimeBudget,
    training_callbacks,
)
from tests.interruptions import CrashAtStep

EPOCHS = 5
INTERRUPT_AT = 2  # 0-based: the third epoch never finishes


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1)) + 0.1).astype("float32")
    return x, y


def _model():
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


class EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == INTERRUPT_AT:
            raise RuntimeError("simulated crash")


def _fit(model, callbacks, validation=False):
    x, y = _data()
    return model.fit(
        x,
        y,
        batch_size=8,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
        validation_data=(x, y) if validation else None,
    )


def _weights(model):
    return [ops.convert_to_numpy(w) for w in model.weights]


def _log_rows(output_dir):
    with open(os.path.join(output_dir, "training_log.csv")) as f:
        return list(csv.DictReader(f))


def _interrupted_run(output_dir, **kwargs):
    first = EpochRecorder()
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(_model(), training_callbacks(output_dir, **kwargs) + [first, Interrupt()])
    assert first.epochs == [0, 1]
    assert os.path.isfile(os.path.join(output_dir, "backup", "latest.weights.h5"))


def test_interrupted_fit_resumes_and_matches_uninterrupted_run(tmp_path):
    reference = _model()
    _fit(reference, [])

    output_dir = str(tmp_path / "run")
    _interrupted_run(output_dir)

    resumed = _model()
    second = EpochRecorder()
    history = _fit(resumed, training_callbacks(output_dir) + [second])

    assert second.epochs == [2, 3, 4]
    assert len(history.history["loss"]) == 3
    assert [int(row["epoch"]) for row in _log_rows(output_dir)] == [0, 1, 2, 3, 4]
    for actual, expected in zip(_weights(resumed), _weights(reference)):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    # A completed run removes its backup, so the next fit starts from scratch.
    assert not os.path.exists(os.path.join(output_dir, "backup"))

    checkpoint = os.path.join(output_dir, "checkpoint.weights.h5")
    assert os.path.isfile(checkpoint)
    loaded = _model()
    loaded.optimizer.build(loaded.trainable_variables)
    loaded.load_weights(checkpoint)
    for actual, expected in zip(_weights(loaded), _weights(resumed)):
        np.testing.assert_array_equal(actual, expected)


def test_best_checkpoint_value_survives_a_resume(tmp_path):
    output_dir = str(tmp_path / "run")
    _interrupted_run(output_dir, save_best_only=True)
    losses = [float(row["loss"]) for row in _log_rows(output_dir)]

    class ReadBest(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.monitor, self.best = checkpoint.monitor, checkpoint.best

    callbacks = training_callbacks(output_dir, save_best_only=True)
    (checkpoint,) = [c for c in callbacks if isinstance(c, ResumableModelCheckpoint)]
    probe = ReadBest()
    _fit(_model(), callbacks + [probe])
    assert probe.monitor == "loss"
    assert probe.best == pytest.approx(min(losses), rel=1e-6)
    all_losses = [float(row["loss"]) for row in _log_rows(output_dir)]
    assert checkpoint.best == pytest.approx(min(all_losses), rel=1e-6)


def test_monitor_defaults_to_val_loss_with_validation_data(tmp_path):
    callbacks = training_callbacks(str(tmp_path), save_best_only=True)
    (checkpoint,) = [c for c in callbacks if isinstance(c, ResumableModelCheckpoint)]
    _fit(_model(), callbacks, validation=True)
    assert checkpoint.monitor == "val_loss"
    assert os.path.isfile(tmp_path / "checkpoint.weights.h5")

    callbacks = training_callbacks(str(tmp_path / "other"), monitor="val_mae", mode="min")
    assert callbacks[1].monitor == "val_mae"


def test_callback_list(tmp_path):
    output_dir = tmp_path / "nested" / "run"
    callbacks = training_callbacks(output_dir, tensorboard=True)
    assert output_dir.is_dir()
    backup, checkpoint, logger, board = callbacks
    assert isinstance(backup, keras.callbacks.BackupAndRestore)
    assert backup.backup_dir == str(output_dir / "backup")
    assert isinstance(checkpoint, keras.callbacks.ModelCheckpoint)
    assert checkpoint.filepath == str(output_dir / "checkpoint.weights.h5")
    assert checkpoint.save_weights_only
    assert isinstance(logger, keras.callbacks.CSVLogger)
    assert logger.filename == str(output_dir / "training_log.csv") and logger.append
    assert isinstance(board, keras.callbacks.TensorBoard)
    assert board.log_dir == str(output_dir / "tensorboard")

    callbacks = training_callbacks(output_dir, csv_log=False)
    assert [type(c) for c in callbacks] == [
        keras.callbacks.BackupAndRestore,
        ResumableModelCheckpoint,
    ]


def test_invalid_arguments(tmp_path):
    a_file = tmp_path / "not_a_dir"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="output_dir"):
        training_callbacks(a_file)
    with pytest.raises(ValueError, match="output_dir"):
        training_callbacks(None)
    with pytest.raises(ValueError, match="monitor"):
        training_callbacks(tmp_path, monitor="")
    with pytest.raises(ValueError, match="mode"):
        training_callbacks(tmp_path, mode="up")


# ------------------------------------------------------------ time budget

STEPS_PER_EPOCH = 4  # 32 examples, batches of 8


class FakeClock:
    """A clock that moves only when told: one "second" per training step."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Tick(keras.callbacks.Callback):
    def __init__(self, clock, seconds=1.0):
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def on_train_batch_begin(self, batch, logs=None):
        self.clock.now += self.seconds


def _iterations(model):
    return int(ops.convert_to_numpy(model.optimizer.iterations))


def test_time_budget_stops_mid_epoch_at_the_first_step_past_it(tmp_path):
    clock = FakeClock()
    budget = TimeBudget(6, clock=clock)
    recorder = EpochRecorder()
    model = _model()
    history = _fit(model, [budget, recorder, Tick(clock),
                           keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
    assert _iterations(model) == 6  # 20 steps planned
    assert budget.stopped and budget.exhausted and budget.spent == 6
    assert budget.epochs_reached == 1 + 2 / STEPS_PER_EPOCH
    # Keras closes the partial epoch: its logs and on_epoch_end are not lost.
    assert recorder.epochs == [0, 1] and len(history.history["loss"]) == 2
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 3


def test_a_budget_never_reached_changes_nothing():
    reference = _model()
    _fit(reference, [])
    clock = FakeClock()
    budget = TimeBudget(1e6, clock=clock)
    model = _model()
    _fit(model, [budget, Tick(clock)])
    assert not budget.stopped and not budget.exhausted
    assert budget.epochs_reached == EPOCHS and budget.spent == EPOCHS * STEPS_PER_EPOCH
    assert _iterations(model) == _iterations(reference) == EPOCHS * STEPS_PER_EPOCH
    for actual, expected in zip(_weights(model), _weights(reference)):
        np.testing.assert_array_equal(actual, expected)


def test_a_budget_reached_on_the_last_step_is_not_a_stop():
    clock = FakeClock()
    budget = TimeBudget(EPOCHS * STEPS_PER_EPOCH, clock=clock)
    model = _model()
    _fit(model, [budget, Tick(clock)])
    assert budget.exhausted and not budget.stopped
    assert budget.epochs_reached == EPOCHS and _iterations(model) == EPOCHS * STEPS_PER_EPOCH


def test_time_before_fit_counts_from_started():
    clock = FakeClock()
    started = clock.now
    clock.now += 3.5  # e.g. loading the data and training a tokenizer
    budget = TimeBudget(6, clock=clock, started=started)
    model = _model()
    _fit(model, [budget, Tick(clock)])
    assert _iterations(model) == 3 and budget.spent == 6.5
    # A budget spent before `fit` still lets the first step run, then stops.
    spent = TimeBudget(1, clock=clock, started=started)
    model = _model()
    _fit(model, [spent, Tick(clock)])
    assert _iterations(model) == 1 and spent.stopped


def test_a_resumed_run_spends_only_what_is_left_of_the_budget(tmp_path):
    output_dir = str(tmp_path / "run")
    clock = FakeClock()
    first = _model()
    # Crashes in the middle of the third epoch, after 10 steps: the backup
    # (and the seconds it holds) are from the end of the second epoch.
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(first, training_callbacks(output_dir, time_budget=14, clock=clock)
             + [Tick(clock), CrashAtStep(10)])
    state = os.path.join(output_dir, "backup", "time_budget.json")
    with open(state) as f:
        assert json.load(f) == {"seconds": 8.0, "epochs": 2.0, "time_budget": 14.0}

    clock.now += 1000  # the machine was down for a while: that is not training time
    callbacks = training_callbacks(output_dir, time_budget=14, clock=clock)
    (budget,) = [c for c in callbacks if isinstance(c, TimeBudget)]
    assert budget.spent_before == 8 and budget.remaining == 6
    resumed = _model()
    recorder = EpochRecorder()
    _fit(resumed, callbacks + [recorder, Tick(clock)])
    # 6 more steps from the state after step 8: 14 in all, as the budget says.
    assert _iterations(resumed) == 14 and budget.spent == 14
    assert budget.stopped and budget.epochs_reached == 3 + 2 / STEPS_PER_EPOCH
    assert recorder.epochs == [2, 3]
    assert not os.path.exists(os.path.join(output_dir, "backup"))

    # The same as a run of that budget that was never interrupted.
    clock = FakeClock()
    whole = _model()
    _fit(whole, training_callbacks(str(tmp_path / "whole"), time_budget=14, clock=clock)
         + [Tick(clock)])
    assert _iterations(whole) == 14
    for actual, expected in zip(_weights(resumed), _weights(whole)):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_time_budget_callback_order_and_invalid_budgets(tmp_path):
    callbacks = training_callbacks(tmp_path, time_budget=60)
    assert [type(c) for c in callbacks[:3]] == [
        keras.callbacks.BackupAndRestore, TimeBudget, ResumableModelCheckpoint]
    assert callbacks[1].state_path == str(tmp_path / "backup" / "time_budget.json")
    for bad in (0, -5, float("nan"), float("inf"), "10", True, None):
        with pytest.raises(ValueError, match=r"`seconds` must be a positive number of seconds"):
            TimeBudget(bad)
    with pytest.raises(ValueError, match=r"`time_budget` must be a positive number"):
        training_callbacks(tmp_path, time_budget=0)
    with pytest.raises(ValueError, match="clock"):
        TimeBudget(10, clock=12.0)
