"""Where a training step's time goes: TensorFlow's own profiler, per op type and per layer.

Builds the same models as `training_speed.py` (keras-attn and keras-hub, same
shapes and batches), trains a few warm-up steps, then records `--steps` steps
with `tf.profiler.experimental` and reads the trace (TensorFlow's XSpace
protobuf) back: every op the executor ran on the host, its duration summed
per op type (`MatMul`, `Softmax`, ...) and per top-level layer scope, divided
by the number of steps. XLA off only: with XLA a step is one compiled cluster
and the trace cannot split it.

    python benchmarks/profile_ops.py [--model bert] [--precision mixed_bfloat16]
        [--sides keras_attn,keras_hub] [--steps 5] [--output FILE.md]
    python benchmarks/profile_ops.py --smoke   # tiny shapes, seconds

Op times are wall time per op on the executor threads; ops on the two cores
overlap, so the sum can exceed the step time. Read shares, and compare the
two sides row by row.
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

import keras
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reporting  # noqa: E402
import training_speed  # noqa: E402

# Host events of the runtime itself (function calls, the input pipeline), which
# contain the ops rather than being ops.
FRAMEWORK_EVENTS = ("KernelAndDevice", "Iterator", "MakeIterator", "EagerExecute",
                    "EagerLocalExecute")


def xspace_op_times(logdir):
    """`{(op type, op name): total microseconds}` from the host plane of a trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb trace under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as handle:
        space.ParseFromString(handle.read())
    times = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # TensorFlow op events are named "op_name:OpType".
                if ":" not in name or name.startswith(("Executor", "Thunk", "tf_")):
                    continue
                op_name, op_type = name.rsplit(":", 1)
                if (op_name.startswith(FRAMEWORK_EVENTS) or not op_type.lstrip("_")
                        or not op_type.lstrip("_")[0].isupper() or " " in op_type):
                    continue
                times[(op_type, op_name)] += event.duration_ps / 1e6
    return times


def layer_scope(op_name):
    """The layer an op belongs to, every block's copy counted together: e.g.
    `encoder_backbone/encoder_block_N/self_attention`, `gradient_tape/...` for
    the backward pass."""
    parts = [p for p in op_name.split("/") if p and "PartitionedCall" not in p]
    backward = bool(parts) and parts[0] == "gradient_tape"
    parts = [re.sub(r"(_\d+)+$", "", p) for p in parts[1 if backward else 0:]]
    parts = [re.sub(r"_\d+_", "_N_", p) for p in parts]
    scope = "/".join(parts[:4]) if len(parts) > 4 else "/".join(parts[:-1]) or op_name
    return ("backward: " if backward else "") + scope


def profile(side, shape, precision, steps, warmup):
    """Step seconds and the op times (microseconds per step) of one side."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(precision)
    try:
        if side == "keras_attn":
            model = training_speed.keras_attn_model(shape)
            model.compile(metrics=[], jit_compile=False)
        else:
            model = training_speed.keras_hub_model(shape)
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          jit_compile=False)
        ids, labels = training_speed.random_batches(shape)
        x, y, w = training_speed.training_data(side, shape, ids, labels)
        arrays = (x, y) if w is None else (x, y, w)
        dataset = tf.data.Dataset.from_tensors(arrays).repeat()
        model.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0)
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(logdir)
            started = time.perf_counter()
            model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
            seconds = (time.perf_counter() - started) / steps
            tf.profiler.experimental.stop()
            times = xspace_op_times(logdir)
    finally:
        keras.config.set_dtype_policy("float32")
    return seconds, {key: value / steps for key, value in times.items()}


def grouped(times, key):
    totals = collections.Counter()
    for (op_type, op_name), micros in times.items():
        totals[key(op_type, op_name)] += micros
    return totals


def markdown(results, top):
    sides = list(results)
    lines = []
    for title, key in (("op type", lambda t, n: t), ("layer", lambda t, n: layer_scope(n))):
        totals = {side: grouped(results[side][1], key) for side in sides}
        names = collections.Counter()
        for side in sides:
            names.update(totals[side])
        lines += [f"| {title} | " + " | ".join(f"{s} ms/step" for s in sides) + " |",
                  "| --- | " + " | ".join("---" for _ in sides) + " |"]
        for name, _ in names.most_common(top):
            cells = " | ".join(f"{totals[s][name] / 1000:.1f}" for s in sides)
            lines.append(f"| `{name}` | {cells} |")
        sums = " | ".join(f"{sum(totals[s].values()) / 1000:.1f}" for s in sides)
        steps = " | ".join(f"{results[s][0] * 1000:.1f}" for s in sides)
        lines += [f"| all ops (sum over threads) | {sums} |", f"| step wall time | {steps} |", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert", choices=sorted(training_speed.SHAPES))
    parser.add_argument("--precision", default="mixed_bfloat16",
                        choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--sides", default="keras_attn,keras_hub")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, for the test suite")
    parser.add_argument("--output", help="append the tables to this markdown file")
    args = parser.parse_args(argv)
    shapes = training_speed.SMOKE_SHAPES if args.smoke else training_speed.SHAPES
    shape = shapes[args.model]
    sides = [s for s in args.sides.split(",") if s]
    for side in sides:
        if side not in ("keras_attn", "keras_hub"):
            parser.error(f"--sides: expected keras_attn and/or keras_hub, got {side!r}")
    results = {side: profile(side, shape, args.precision, args.steps, args.warmup)
               for side in sides}
    header = (
        f"{reporting.machine_line('profile_ops.py', argv)}. Model `{args.model}` "
        f"({shape['width']} wide, {shape['layers']} layers, sequence {shape['length']}, batch "
        f"{shape['batch']}), {args.precision}, XLA off; {args.steps} profiled steps after "
        f"{args.warmup}.\n"
    )
    reporting.emit(header + "\n" + markdown(results, args.top), args.output)
    return results


if __name__ == "__main__":
    main()
