"""Fused QKV projection: one matmul against three, forward+backward.

Self-attention projects the same input three times. This measures, for batch
16 x 256 tokens at widths 256 and 512, the query/key/value projections of
`keras_attn.layers.MultiHeadAttention` as they run (three `EinsumDense`
layers) against one matmul with the three kernels concatenated at call time
(the variables stay as they are), forward plus the gradients with respect to
the input and the six weights, float32 and mixed_bfloat16, XLA off and on.
Median of `--repeats` steps after one that compiles; in-process.

Usage:
    python benchmarks/fused_qkv.py  # writes benchmarks/results/attention_qkv.md
    python benchmarks/fused_qkv.py --smoke --output /tmp/qkv.md
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import time


def _measure(width, policy, xla, repeats, batch, length):
    import keras
    import numpy as np
    import tensorflow as tf
    from keras import ops

    from keras_attn.layers import MultiHeadAttention

    keras.config.set_dtype_policy(policy)
    heads = width // 64
    layer = MultiHeadAttention(num_heads=heads, key_dim=64)
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, length, width)), "float32")
    layer(x[:, :4], x[:, :4])
    projections = (layer.query_dense, layer.key_dense, layer.value_dense)
    weights = [w for p in projections for w in (p.kernel, p.bias)]

    def separate(x):
        return [p(x) for p in projections]

    def fused(x):
        x = ops.cast(x, layer.compute_dtype)
        kernel = ops.concatenate(
            [ops.reshape(p.kernel, (width, -1)) for p in projections], axis=-1
        )
        bias = ops.concatenate([ops.reshape(p.bias, (-1,)) for p in projections], axis=0)
        y = ops.matmul(x, ops.cast(kernel, x.dtype)) + ops.cast(bias, x.dtype)
        q, k, v = ops.split(y, 3, axis=-1)
        return [ops.reshape(t, (batch, length, heads, 64)) for t in (q, k, v)]

    def training_step(project):
        @tf.function(jit_compile=xla)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = sum(tf.reduce_sum(tf.cast(t, "float32") ** 2) for t in project(x))
            return tape.gradient(loss, [x, *weights])

        return step

    results = {}
    for name, project in (("three matmuls", separate), ("one fused matmul", fused)):
        step = training_step(project)

        [g.numpy() for g in step(x)]
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            [g.numpy() for g in step(x)]
            times.append(time.perf_counter() - started)
        results[name] = 1000 * statistics.median(times)
    # Same numbers either way (the fused path is only worth it if exact).
    for a, b in zip(separate(x), fused(x)):
        np.testing.assert_allclose(
            ops.convert_to_numpy(ops.cast(a, "float32")),
            ops.convert_to_numpy(ops.cast(b, "float32")),
            rtol=2e-2 if policy != "float32" else 1e-4,
            atol=2e-2 if policy != "float32" else 1e-4,
        )
    keras.config.set_dtype_policy("float32")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="256,512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", "attention_qkv.md"))
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    batch, length = 16, 256
    widths = [int(w) for w in args.widths.split(",")]
    if args.smoke:
        batch, length, widths, args.repeats = 2, 8, [128], 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    lines = [
        "# Fused QKV projection: one matmul against three",
        "",
        "Command: `python benchmarks/fused_qkv.py "
        + " ".join(argv if argv is not None else sys.argv[1:]) + "`",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end of "
        f"the run (read the ratios). Batch {batch} x {length} tokens, heads of 64; "
        f"forward + gradients with "
        f"respect to the input and the query/key/value kernels and biases, median of "
        f"{args.repeats} steps after one that compiles.",
        "",
        "| width | dtype policy | XLA | three matmuls ms | one fused matmul ms | fused speed-up |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for width in widths:
        for policy in ("float32", "mixed_bfloat16"):
            for xla in (False, True):
                r = _measure(width, policy, xla, args.repeats, batch, length)
                line = (
                    f"| {width} | {policy} | {'on' if xla else 'off'} | "
                    f"{r['three matmuls']:.1f} | {r['one fused matmul']:.1f} | "
                    f"{r['three matmuls'] / r['one fused matmul']:.2f}x |"
                )
                print(line, flush=True)
                lines.append(line)
    lines.append("")
    lines.append(f"Whole run: {(time.perf_counter() - started) / 60:.1f} min.")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
