"""A callback that stands in for a crash in the tests of resumable training."""

import keras


class CrashAtStep(keras.callbacks.Callback):
    """Raises after the `step`-th training step of the run, as a killed
    process would stop it."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            raise RuntimeError("simulated crash")
