"""Training tokens/s of keras-attn and keras-hub on the same shapes and data.

Models (random weights, random token data, the same batches for both sides):

- `gpt256`: GPT-style causal LM, vocabulary 8192, width 256, 4 layers, 4
  heads, sequence 256, batch 16 (keras-attn `Generator` vs keras-hub
  `GPT2CausalLM` built from a `GPT2Backbone` config);
- `gpt512`: the same at width 512, 8 heads;
- `bert`: BERT-style 2-class classifier of the same size as `gpt256`
  (keras-attn `Classifier` vs keras-hub `BertTextClassifier` on a
  `BertBackbone`).

Both sides train with dropout 0.1 and the tanh approximation of GELU
(keras-hub's GPT-2 and BERT activation). Each side runs at
float32 / mixed_bfloat16 x XLA on / off; the first steps
(compilation, warm-up) are excluded, then the median of `--steps` step
times gives tokens/s. The bests are compared. Model FLOPs utilisation (MFU)
is against this machine's matmul peak, measured here for float32 and
bfloat16 with a large `tf.linalg.matmul`; the convention is 6 x N x tokens
(N: parameters in matmuls, the output projection included, embeddings
lookups not) plus 12 x layers x T x width x tokens for attention scores and
their values (forward + backward, causal masking not discounted).

    python benchmarks/training_speed.py [--steps 3] [--models gpt256,gpt512,bert]
        [--output benchmarks/results/training_speed.json]
    python benchmarks/training_speed.py --smoke   # tiny shapes, seconds
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_attn.models import Classifier, Generator  # noqa: E402

SHAPES = {
    "gpt256": dict(kind="gpt", vocabulary=8192, width=256, layers=4, heads=4, length=256,
                   batch=16),
    "gpt512": dict(kind="gpt", vocabulary=8192, width=512, layers=4, heads=8, length=256,
                   batch=16),
    "bert": dict(kind="bert", vocabulary=8192, width=256, layers=4, heads=4, length=256,
                 batch=16),
}
SMOKE_SHAPES = {
    name: dict(shape, vocabulary=300, width=16, layers=1, heads=2, length=8, batch=2)
    for name, shape in SHAPES.items()
}
SETTINGS = [(p, x) for p in ("float32", "mixed_bfloat16") for x in (True, False)]


def matmul_peak(dtype, size, repeats=10):
    """GFLOP/s of a `size`-square matmul in `dtype`: the best of `repeats`
    (a peak; a median let one slow moment halve it)."""
    a = tf.random.normal((size, size), dtype="float32")
    a = tf.cast(a, dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    product = tf.function(lambda x, y: tf.linalg.matmul(x, y))
    product(a, b).numpy()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        product(a, b).numpy()
        times.append(time.perf_counter() - started)
    return 2 * size**3 / min(times) / 1e9


def model_flops_per_token(shape):
    """Training FLOPs per token (convention in the module docstring)."""
    width, layers, length = shape["width"], shape["layers"], shape["length"]
    per_layer = 4 * width * width + 2 * width * 4 * width  # QKV + output, feed-forward
    head = shape["vocabulary"] * width if shape["kind"] == "gpt" else 0
    matmul_parameters = layers * per_layer + head
    return 6 * matmul_parameters + 12 * layers * length * width


def random_batches(shape, seed=0):
    rng = np.random.default_rng(seed)
    batch, length, vocabulary = shape["batch"], shape["length"], shape["vocabulary"]
    ids = rng.integers(5, vocabulary, (batch, length + 1)).astype("int32")
    labels = rng.integers(0, 2, (batch,)).astype("int32")
    return ids, labels


def keras_attn_model(shape):
    common = dict(num_layers=shape["layers"], num_heads=shape["heads"],
                  hidden_dim=shape["width"], intermediate_dim=4 * shape["width"],
                  sequence_length=shape["length"], vocabulary_size=shape["vocabulary"],
                  dropout=0.1,  # keras-hub's GPT2Backbone and BertBackbone default
                  activation="gelu_approximate")  # theirs too: the same model on both sides
    if shape["kind"] == "gpt":
        model = Generator.from_preset("tiny", **common)
    else:
        model = Classifier.from_preset("tiny", num_classes=2, **common)
    return model


def keras_hub_model(shape):
    import keras_hub

    if shape["kind"] == "gpt":
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=shape["vocabulary"], num_layers=shape["layers"],
            num_heads=shape["heads"], hidden_dim=shape["width"],
            intermediate_dim=4 * shape["width"], max_sequence_length=shape["length"],
        )
        return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=shape["vocabulary"], num_layers=shape["layers"],
        num_heads=shape["heads"], hidden_dim=shape["width"],
        intermediate_dim=4 * shape["width"], max_sequence_length=shape["length"],
    )
    return keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2,
                                               preprocessor=None)


def training_data(side, shape, ids, labels):
    """`(x, y, sample_weight)` numpy arrays of one batch for `side`."""
    inputs, targets = ids[:, :-1], ids[:, 1:]
    weights = np.ones(inputs.shape, "float32")
    mask = np.ones(inputs.shape, bool)
    if shape["kind"] == "gpt":
        if side == "keras_attn":
            return inputs, targets, weights
        return {"token_ids": inputs, "padding_mask": mask}, targets, weights
    if side == "keras_attn":
        x = {"token_ids": inputs, "segment_ids": np.zeros_like(inputs), "padding_mask": mask}
    else:
        x = {"token_ids": inputs, "segment_ids": np.zeros_like(inputs), "padding_mask": mask}
    return x, labels, None


class StepTimer(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.started)

    def on_train_begin(self, logs=None):
        self.times = []


def measure(side, shape, precision, jit_compile, steps, warmup):
    """Median step seconds and the loss before / after."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(precision)
    try:
        model = keras_attn_model(shape) if side == "keras_attn" else keras_hub_model(shape)
        ids, labels = random_batches(shape)
        x, y, w = training_data(side, shape, ids, labels)
        if side == "keras_attn":
            # The task's own loss and optimizer (Adam 1e-3); no metrics, as on
            # the keras-hub side (an accuracy is an argmax over every logit).
            model.compile(metrics=[], jit_compile=jit_compile)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss,
                          jit_compile=jit_compile)
        arrays = (x, y) if w is None else (x, y, w)
        dataset = tf.data.Dataset.from_tensors(arrays).repeat()
        timer = StepTimer()
        started = time.perf_counter()
        history = model.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0)
        compile_seconds = time.perf_counter() - started
        history2 = model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0,
                             callbacks=[timer])
    finally:
        keras.config.set_dtype_policy("float32")
    step = statistics.median(timer.times)
    return {
        "side": side, "precision": precision, "xla": jit_compile,
        "step_seconds": step,
        "tokens_per_second": shape["batch"] * shape["length"] / step,
        "first_steps_seconds": compile_seconds,
        "loss_first": float(history.history["loss"][0]),
        "loss_last": float(history2.history["loss"][-1]),
    }


def run(models, steps, warmup, smoke, peak_size):
    shapes = SMOKE_SHAPES if smoke else SHAPES
    peaks = {dtype: matmul_peak(dtype, peak_size) for dtype in ("float32", "bfloat16")}
    results = {"peaks_gflops": peaks, "models": {}}
    for name in models:
        shape = shapes[name]
        flops = model_flops_per_token(shape)
        rows = []
        for side in ("keras_attn", "keras_hub"):
            for precision, jit_compile in SETTINGS:
                row = measure(side, shape, precision, jit_compile, steps, warmup)
                peak = peaks["bfloat16" if precision == "mixed_bfloat16" else "float32"]
                row["mfu"] = row["tokens_per_second"] * flops / 1e9 / peak
                rows.append(row)
                print(f"{name} {side} {precision} xla={jit_compile}: "
                      f"{row['tokens_per_second']:.0f} tokens/s", flush=True)
        best = {
            side: max((r for r in rows if r["side"] == side),
                      key=lambda r: r["tokens_per_second"])
            for side in ("keras_attn", "keras_hub")
        }
        results["models"][name] = {
            "shape": shape, "flops_per_token": flops, "rows": rows,
            "ratio": best["keras_attn"]["tokens_per_second"]
            / best["keras_hub"]["tokens_per_second"],
        }
    return results


def markdown(results, command):
    peaks = results["peaks_gflops"]
    lines = [
        f"Command: `{command}`; {datetime.date.today().isoformat()}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}.",
        "",
        f"Measured matmul peak: float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 "
        f"{peaks['bfloat16']:.0f} GFLOP/s.",
        "MFU convention: 6 x N x tokens (N: matmul parameters incl. the LM head) + "
        "12 x layers x T x width x tokens (attention), against the peak of the compute dtype.",
        "",
    ]
    for name, entry in results["models"].items():
        shape = entry["shape"]
        lines += [
            f"### {name}: width {shape['width']}, {shape['layers']} layers, "
            f"{shape['heads']} heads, sequence {shape['length']}, batch {shape['batch']}",
            "",
            "| side | precision | XLA | ms/step | tokens/s | MFU | first steps s "
            "| loss first -> last |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in entry["rows"]:
            lines.append(
                f"| {row['side']} | {row['precision']} | {'on' if row['xla'] else 'off'} | "
                f"{1000 * row['step_seconds']:.0f} | {row['tokens_per_second']:.0f} | "
                f"{100 * row['mfu']:.1f}% | {row['first_steps_seconds']:.1f} | "
                f"{row['loss_first']:.3f} -> {row['loss_last']:.3f} |"
            )
        lines += ["", f"Best keras-attn / best keras-hub: **{entry['ratio']:.2f}x**", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt256,gpt512,bert")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak-size", type=int, default=2048)
    parser.add_argument("--output", default="benchmarks/results/training_speed.json")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one step each")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    for name in models:
        if name not in SHAPES:
            parser.error(f"--models: unknown {name!r}; choose from {sorted(SHAPES)}")
    if args.smoke:
        args.steps, args.warmup, args.peak_size = 1, 1, 64
    results = run(models, args.steps, args.warmup, args.smoke, args.peak_size)
    command = "python benchmarks/training_speed.py " + " ".join(argv if argv is not None
                                                               else sys.argv[1:])
    table = markdown(results, command.strip())
    results["markdown"] = table
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    print(table)
    return results


if __name__ == "__main__":
    main()
