"""Training-step time of each task's `compile()` default, with and without XLA.

Keras' `jit_compile="auto"` turns XLA off on machines without an accelerator;
the tasks default to `jit_compile=True`. This measures what that choice is
worth here: each task's `tiny` preset on its built-in data, the same batches,
one epoch to compile and warm up, then the median time of the next epochs.

    python benchmarks/xla_training_step.py [--epochs 4] [--batch-size 64]
"""

import argparse
import statistics
import time

import keras

from keras_attn.data import load_builtin
from keras_attn.models import Classifier, Generator, MaskedLanguageModel, Translator

SETUPS = {
    "translator": (Translator, "number_words", {"source_length": 32, "target_length": 8}),
    "classifier": (Classifier, "sentiment_negation", {"sequence_length": 16, "num_classes": 2}),
    "masked_lm": (MaskedLanguageModel, "sorted_letters", {"sequence_length": 24}),
    "generator": (Generator, "alphabet_runs", {"sequence_length": 16}),
}


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)

    def on_train_begin(self, logs=None):
        self.seconds = []


def step_milliseconds(task, jit_compile, epochs, batch_size, num_examples):
    cls, dataset_name, arguments = SETUPS[task]
    keras.utils.set_random_seed(0)
    model = cls.from_preset("tiny", **arguments)
    data = load_builtin(dataset_name, num_examples=num_examples)
    dataset = model.dataset_from_data(data, batch_size=batch_size)
    model.compile(jit_compile=jit_compile)
    timer = EpochTimer()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[timer])
    steps = num_examples // batch_size
    # The first epoch compiles; the rest are steady state.
    return 1000 * statistics.median(timer.seconds[1:]) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-examples", type=int, default=2048)
    args = parser.parse_args()
    print("| task (tiny preset) | ms per step, XLA | ms per step, no XLA | XLA speed-up |")
    print("| --- | --- | --- | --- |")
    for task in SETUPS:
        with_xla, without = (
            step_milliseconds(task, flag, args.epochs, args.batch_size, args.num_examples)
            for flag in (True, False)
        )
        print(f"| {task} | {with_xla:.1f} | {without:.1f} | {without / with_xla:.2f}x |")


if __name__ == "__main__":
    main()
