"""Training-step time of each task with and without XLA, by width and precision.

What `compile(jit_compile="auto")` decides from (`keras_attn.training.compilation`):
each task's `tiny` preset, widened to `--hidden-dims` (heads of 16 up to 4
heads, feed-forward 4x width), trained on its built-in data with the same
batches; one epoch compiles and warms up, then the median of the next epochs
gives milliseconds per step; the first epoch's extra seconds (over a steady
one) are the compile time, and their difference over the per-step gain is how
many steps XLA takes to repay its compile (the run length from which
`"auto"` uses it on a CPU). Also `steps_per_execution` (Keras runs that many
steps per call into the compiled function) at the narrowest width (0: skip).

    python benchmarks/xla_training_step.py [--epochs 4] [--batch-size 64]
        [--hidden-dims 64,128,256] [--precisions float32,mixed_bfloat16]
        [--tasks translator,classifier,generator] [--output FILE.md]
    python benchmarks/xla_training_step.py --smoke   # tiny and short, for the test suite
"""

import argparse
import statistics
import time

import keras
import reporting

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


def width_arguments(hidden_dim):
    if hidden_dim is None:
        return {}
    return dict(hidden_dim=hidden_dim, intermediate_dim=4 * hidden_dim,
                num_heads=max(1, min(4, hidden_dim // 16)))


def step_milliseconds(task, jit_compile, epochs, batch_size, num_examples, hidden_dim=None,
                      precision="float32", steps_per_execution=1):
    cls, dataset_name, arguments = SETUPS[task]
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(precision)
    try:
        model = cls.from_preset("tiny", **arguments, **width_arguments(hidden_dim))
        data = load_builtin(dataset_name, num_examples=num_examples)
        dataset = model.dataset_from_data(data, batch_size=batch_size, bucketing=False)
        model.compile(jit_compile=jit_compile, steps_per_execution=steps_per_execution)
        timer = EpochTimer()
        model.fit(dataset, epochs=epochs, verbose=0, callbacks=[timer])
    finally:
        keras.config.set_dtype_policy("float32")
    steps = num_examples // batch_size
    # The first epoch compiles; the rest are steady state.
    steady = statistics.median(timer.seconds[1:])
    return 1000 * steady / steps, timer.seconds[0] - steady


def repaid_after(with_xla, without):
    """Steps after which XLA's extra compile time is repaid ('never' without a gain)."""
    (xla_ms, xla_compile), (plain_ms, plain_compile) = with_xla, without
    if xla_ms >= plain_ms:
        return "never"
    return f"{max(0.0, xla_compile - plain_compile) * 1000 / (plain_ms - xla_ms):.0f}"


def parse_widths(text):
    return [None if w == "tiny" else int(w) for w in text.split(",") if w]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-examples", type=int, default=2048)
    parser.add_argument("--hidden-dims", default="64,128,256",
                        help="comma-separated widths; 'tiny' is the preset's own (64)")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--tasks", default="translator,classifier,generator")
    parser.add_argument("--steps-per-execution", type=int, default=8,
                        help="compared with 1 at the narrowest width, XLA on and off")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--output", help="append the tables to this markdown file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.num_examples, args.batch_size = 2, 64, 32
        args.hidden_dims, args.precisions, args.tasks = "16", "float32", "generator"
    tasks = [t for t in args.tasks.split(",") if t]
    for task in tasks:
        if task not in SETUPS:
            parser.error(f"--tasks: expected names among {sorted(SETUPS)}, got {task!r}")
    widths = parse_widths(args.hidden_dims)
    precisions = [p for p in args.precisions.split(",") if p]
    started = time.perf_counter()
    lines = [
        "| task | width | precision | ms/step, XLA | ms/step, no XLA | XLA speed-up "
        "| first-epoch extra s, XLA | no XLA | XLA repaid after (steps) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    run = dict(epochs=args.epochs, batch_size=args.batch_size, num_examples=args.num_examples)
    for task in tasks:
        for width in widths:
            for precision in precisions:
                with_xla, without = (
                    step_milliseconds(task, flag, hidden_dim=width, precision=precision, **run)
                    for flag in (True, False)
                )
                lines.append(
                    f"| {task} | {width or 'tiny'} | {precision} | {with_xla[0]:.1f} | "
                    f"{without[0]:.1f} | {without[0] / with_xla[0]:.2f}x | {with_xla[1]:.1f} | "
                    f"{without[1]:.1f} | {repaid_after(with_xla, without)} |")
                print(lines[-1], flush=True)
    spe = args.steps_per_execution
    lines += [] if spe == 0 else [
        "",
        f"| task | width | XLA | ms/step, steps_per_execution 1 | ms/step, {spe} | speed-up |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for task in tasks if spe else ():
        for flag in (True, False):
            one, many = (
                step_milliseconds(task, flag, hidden_dim=widths[0], precision=precisions[0],
                                  steps_per_execution=n, **run)[0]
                for n in (1, spe)
            )
            lines.append(f"| {task} | {widths[0] or 'tiny'} | {'on' if flag else 'off'} | "
                         f"{one:.1f} | {many:.1f} | {one / many:.2f}x |")
            print(lines[-1], flush=True)
    header = (
        f"{reporting.machine_line('xla_training_step.py', argv)}; whole run "
        f"{(time.perf_counter() - started) / 60:.1f} min. Batch {args.batch_size}, "
        f"{args.num_examples} examples an epoch, median of epochs 2-{args.epochs}, no bucketing."
    )
    reporting.emit(header + "\n\n" + "\n".join(lines) + "\n", args.output)

if __name__ == "__main__":
    main()
