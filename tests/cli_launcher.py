"""`python -m tests.cli_launcher CPUS [keras-attn arguments]`: the
`keras-attn` command in a process whose CPU is split into CPUS logical
devices (which TensorFlow allows only before it starts, hence a process of
its own), as `tf.distribute.MirroredStrategy` tests need."""

import sys

import tensorflow as tf


def main(argv):
    count = int(argv[0])
    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    from keras_attn.cli import main as keras_attn

    return keras_attn(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
