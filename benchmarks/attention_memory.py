"""Attention alone: forward+backward time and peak memory against the length.

One self-attention layer (4 heads of 64, width 256, batch 1, causal by
default) on random inputs, trained one step (the gradients of a sum of the
outputs with respect to the inputs and every weight) inside a
`tf.function`, for each of:

- `keras_attn explicit`: `keras_attn.layers.MultiHeadAttention` computing the
  weights explicitly (`return_attention_scores=True`);
- `keras_attn fused`: the same layer through `keras.ops.dot_product_attention`
  (`chunked_attention_threshold=None`);
- `keras_attn chunked`: the same layer through the chunked path
  (`chunked_attention_threshold=1`);
- `keras MultiHeadAttention`: `keras.layers.MultiHeadAttention`.

Every configuration runs in a fresh subprocess. Peak memory is the rise of the
process's peak resident set size (`resource.getrusage(...).ru_maxrss`) from
just before the first call (TensorFlow imported, layer built, inputs made) to
the end of the timed calls. Time is the median of `--repeats` calls after one
that traces and compiles. Configurations whose score matrices alone would pass
`--memory-cap-gib` are skipped and marked so in the table (the explicit
paths hold about four `T x T` float32 tensors per head at once).

Usage:
    python benchmarks/attention_memory.py  # writes benchmarks/results/attention.md
    python benchmarks/attention_memory.py --dtypes float32,mixed_bfloat16 --xla off,on
    python benchmarks/attention_memory.py --smoke --output /tmp/attention.md
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

IMPLEMENTATIONS = (
    "keras_attn explicit",
    "keras_attn fused",
    "keras_attn chunked",
    "keras MultiHeadAttention",
)
DEFAULT_LENGTHS = (256, 512, 1024, 2048, 4096, 8192, 16384)
HEADS, HEAD_SIZE, BATCH = 4, 64, 1
# Tensors of T x T float32 per head that the explicit paths hold at their peak
# (logits, weights and their gradients), used to skip what cannot fit.
EXPLICIT_SCORE_TENSORS = 4


def _estimated_peak_bytes(implementation, length, heads):
    if implementation == "keras_attn chunked":
        return 0
    return EXPLICIT_SCORE_TENSORS * 4 * heads * BATCH * length * length


# ------------------------------------------------------------ the worker


def _peak_rss_bytes():
    import resource

    # Linux reports kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker(config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_attn.layers import MultiHeadAttention

    keras.config.set_dtype_policy(config["dtype"])
    keras.utils.set_random_seed(0)
    heads, head_size, length = config["heads"], config["head_size"], config["length"]
    width = heads * head_size
    implementation = config["implementation"]
    causal = config["causal"]
    if implementation == "keras MultiHeadAttention":
        layer = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=head_size)
    else:
        threshold = {"keras_attn chunked": 1}.get(implementation)
        layer = MultiHeadAttention(
            num_heads=heads,
            key_dim=head_size,
            chunked_attention_threshold=threshold,
            chunked_attention_block_size=config["block_size"],
        )
    scores = implementation == "keras_attn explicit"
    inputs = tf.constant(np.random.default_rng(0).normal(size=(BATCH, length, width)), "float32")
    layer(inputs[:, :8], inputs[:, :8])

    @tf.function(jit_compile=config["xla"])
    def train_step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x, x, use_causal_mask=causal, return_attention_scores=scores)
            output = outputs[0] if scores else outputs
            loss = tf.reduce_sum(tf.cast(output, "float32"))
        return tape.gradient(loss, [x, *layer.trainable_variables])

    def run():
        return [g.numpy() for g in train_step(inputs)]

    baseline = _peak_rss_bytes()
    started = time.perf_counter()
    run()
    first_call = time.perf_counter() - started
    times = []
    for _ in range(config["repeats"]):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    peak = _peak_rss_bytes() - baseline
    return {
        "first_call_s": first_call,
        "step_ms": 1000 * statistics.median(times),
        "peak_mib": peak / 2**20,
    }


def _run_in_subprocess(config, timeout):
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(config)]
    environment = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, environment.get("PYTHONPATH")) if p
    )
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=environment
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"over the {timeout} s time limit"}
    lines = [line for line in finished.stdout.splitlines() if line.startswith("RESULT ")]
    if finished.returncode or not lines:
        tail = (finished.stderr or finished.stdout).strip().splitlines()[-3:]
        return {"skipped": "failed: " + " | ".join(tail)}
    return json.loads(lines[-1][len("RESULT "):])


# ------------------------------------------------------------- the table


def _format_row(row):
    if "skipped" in row:
        measured = ["—", "—", f"skipped: {row['skipped']}"]
    else:
        measured = [f"{row['step_ms']:.1f}", f"{row['peak_mib']:.0f}", ""]
    return (
        f"| {row['length']} | {row['implementation']} | {row['dtype']} | "
        f"{'on' if row['xla'] else 'off'} | " + " | ".join(measured) + " |"
    )


def _best(rows, implementation, length):
    timed = [
        r for r in rows
        if r["implementation"] == implementation and r["length"] == length and "step_ms" in r
    ]
    return min(timed, key=lambda r: r["step_ms"]) if timed else None


def _setting(row):
    return f"{row['dtype']}, XLA {'on' if row['xla'] else 'off'}"


def render(rows, args, command, elapsed_s):
    lines = [
        "# Attention alone: forward+backward time and peak memory",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end of "
        f"the run (read ratios from the same run), Python "
        f"{platform.python_version()}. Whole run: {elapsed_s / 60:.1f} min.",
        "",
        f"Shape: batch {BATCH}, {args.heads} heads of {HEAD_SIZE} (width "
        f"{args.heads * HEAD_SIZE}), self-attention, "
        f"{'causal' if args.causal else 'no mask'}; one training step = forward + gradients "
        "with respect to the input and every weight, inside `tf.function`. Time: median of "
        f"{args.repeats} steps after one that compiles. Peak memory: rise of the subprocess's "
        "peak RSS over the step (`ru_maxrss`), one fresh subprocess per row. Rows whose "
        f"explicit score tensors alone (≈{EXPLICIT_SCORE_TENSORS} × heads × T² float32) "
        f"would pass the {args.memory_cap_gib:g} GiB cap are skipped. Chunked tiles: "
        f"{args.block_size} × {args.block_size}.",
        "",
        "| tokens | implementation | dtype policy | XLA | ms per step | peak MiB | note |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [_format_row(row) for row in rows]
    lines += [
        "",
        "## Best setting per implementation, and keras-attn against Keras' layer",
        "",
        "| tokens | best keras_attn path (setting) | ms | Keras MultiHeadAttention best "
        "(setting) | ms | speed-up | chunked peak MiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for length in args.lengths:
        ours = [
            b for b in (
                _best(rows, name, length) for name in IMPLEMENTATIONS[:3]
            ) if b is not None
        ]
        best_ours = min(ours, key=lambda r: r["step_ms"]) if ours else None
        theirs = _best(rows, IMPLEMENTATIONS[3], length)
        chunked = _best(rows, "keras_attn chunked", length)
        chunked_peak = max(
            (r["peak_mib"] for r in rows
             if r["implementation"] == "keras_attn chunked" and r["length"] == length
             and "peak_mib" in r),
            default=None,
        )
        cells = [str(length)]
        if best_ours:
            cells += [
                f"{best_ours['implementation']} ({_setting(best_ours)})",
                f"{best_ours['step_ms']:.1f}",
            ]
        else:
            cells += ["—", "—"]
        cells += (
            [f"{_setting(theirs)}", f"{theirs['step_ms']:.1f}"] if theirs else ["skipped", "—"]
        )
        cells.append(
            f"{theirs['step_ms'] / best_ours['step_ms']:.2f}x" if best_ours and theirs else "—"
        )
        cells.append(f"{chunked_peak:.0f}" if chunked is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)))
    parser.add_argument("--dtypes", default="float32", help="comma-separated dtype policies")
    parser.add_argument("--xla", default="off,on", help="comma-separated: off, on")
    parser.add_argument("--implementations", default=",".join(IMPLEMENTATIONS))
    parser.add_argument("--heads", type=int, default=HEADS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=512)
    parser.add_argument("--no-causal", dest="causal", action="store_false")
    parser.add_argument("--memory-cap-gib", type=float, default=8.0)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per configuration")
    parser.add_argument("--output", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", "attention.md"))
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, seconds")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.lengths, args.xla, args.repeats, args.block_size = "40", "off", 1, 16
        args.heads = 2
    args.lengths = [int(x) for x in args.lengths.split(",")]
    args.dtypes = args.dtypes.split(",")
    args.xla = [{"off": False, "on": True}[x] for x in args.xla.split(",")]
    args.implementations = args.implementations.split(",")
    for name in args.implementations:
        if name not in IMPLEMENTATIONS:
            parser.error(f"--implementations: {name!r} is not one of {IMPLEMENTATIONS}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(_worker(json.loads(args.worker))), flush=True)
        return
    started = time.perf_counter()
    rows = []
    cap = args.memory_cap_gib * 2**30
    for length in args.lengths:
        for dtype in args.dtypes:
            for xla in args.xla:
                for implementation in args.implementations:
                    row = {
                        "length": length, "implementation": implementation,
                        "dtype": dtype, "xla": xla,
                    }
                    if _estimated_peak_bytes(implementation, length, args.heads) > cap:
                        row["skipped"] = f"over the {args.memory_cap_gib:g} GiB cap"
                    else:
                        config = dict(
                            row, heads=args.heads, head_size=HEAD_SIZE, causal=args.causal,
                            block_size=args.block_size, repeats=args.repeats,
                        )
                        row.update(_run_in_subprocess(config, args.timeout))
                    print(_format_row(row), flush=True)
                    rows.append(row)
    command = "python benchmarks/attention_memory.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:])
    )
    text = render(rows, args, command.strip(), time.perf_counter() - started)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
