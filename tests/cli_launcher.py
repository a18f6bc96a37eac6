"""`python -m tests.cli_launcher CPUS [keras-attn arguments]`: the
`keras-attn` command in a process whose CPU is split into CPUS logical
devices (TensorFlow allows that only before it starts, hence a process of
its own), as `tf.distribute.MirroredStrategy` tests need.

With `KERAS_ATTN_TEST_KILL_AFTER_EPOCH=N` in the environment, `keras-attn
train` dies (`os._exit`, as a killed process would, no clean-up) right after
its N-th epoch's backup and log are written.
"""

import os
import sys

import tensorflow as tf

KILL_AFTER_EPOCH = "KERAS_ATTN_TEST_KILL_AFTER_EPOCH"
KILLED_EXIT_CODE = 137


def _kill_after_epoch(epochs):
    import keras

    from keras_attn.recipes import train

    class KillAfterEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epochs:
                sys.stdout.flush()
                os._exit(KILLED_EXIT_CODE)

    built_in = train.training_callbacks

    def with_kill(*args, **kwargs):
        return [*built_in(*args, **kwargs), KillAfterEpoch()]  # after backup and log

    train.training_callbacks = with_kill


def main(argv):
    count = int(argv[0])
    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    if os.environ.get(KILL_AFTER_EPOCH):
        _kill_after_epoch(int(os.environ[KILL_AFTER_EPOCH]))
    from keras_attn.cli import main as keras_attn

    return keras_attn(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
