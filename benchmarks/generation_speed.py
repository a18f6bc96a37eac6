"""Generation speed: keras-attn's `Generator` vs keras-hub's `GPT2CausalLM`.

Both sides get the same GPT-2-style shape with random weights (built from a
config, nothing downloaded), the same random 16-token prompts, and generate
256 new tokens greedily with no stop token, at batch 1 and batch 8. Each side
runs under every setting of float32 / mixed_bfloat16 x XLA on / off (keras-
hub's `generate` follows `compile(jit_compile=...)`, and so does keras-attn's
`generate_ids`). The first call of each (setting, batch) traces and compiles:
its time less one steady call is reported apart as the compile time; the
steady figure is the median of `--repeats` calls after it. New tokens/s =
batch x new tokens / seconds per call. The ratio compares each side's best
setting.

    python benchmarks/generation_speed.py [--repeats 3] [--output benchmarks/results/decoding.md]
    python benchmarks/generation_speed.py --smoke --output /tmp/decoding.md --json /tmp/g.json

The markdown table replaces this script's section of `--output` (other
sections, e.g. the translation-decoding one, are kept).
"""

import argparse
import inspect
import json
import os
import platform
import statistics
import time

import keras
import numpy as np

# The GPT shape (the training benchmark's): GPT-2 small's layout at
# width 256, so the 2-core CPU runs every setting of both sides in minutes.
SHAPE = dict(vocabulary_size=8192, num_layers=4, num_heads=4, hidden_dim=256,
             intermediate_dim=1024)
SMOKE_SHAPE = dict(vocabulary_size=300, num_layers=1, num_heads=2, hidden_dim=32,
                   intermediate_dim=64)
SETTINGS = [(policy, xla) for policy in ("float32", "mixed_bfloat16") for xla in (True, False)]
# --smoke: no XLA compilation, so the test runs in seconds.
SMOKE_SETTINGS = [("float32", False), ("mixed_bfloat16", False)]
SECTION = "generation_speed"


def keras_attn_generate(shape, length, new_tokens, xla):
    """`(token_ids, padding_mask) -> output ids` of a keras-attn `Generator`
    built under the current dtype policy."""
    from keras_attn.models import DecoderBackbone, Generator
    from keras_attn.tokenizers import ByteTokenizer

    backbone = DecoderBackbone(sequence_length=length, dropout=0.0, **shape)
    generator = Generator(backbone, ByteTokenizer())
    generator.compile(jit_compile=xla)
    # The token budget, where this version of generate_ids takes one.
    budget = {}
    if "max_new_tokens" in inspect.signature(generator.generate_ids).parameters:
        budget = {"max_new_tokens": new_tokens}

    def generate(token_ids, padding_mask):
        return generator.generate_ids(token_ids, padding_mask, stop_token_ids=(), **budget)

    return generate


def keras_hub_generate(shape, length, new_tokens, xla):
    """The same for keras-hub's `GPT2CausalLM` (no preprocessor: ids in,
    ids out, generating up to the buffer's length)."""
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=shape["vocabulary_size"], num_layers=shape["num_layers"],
        num_heads=shape["num_heads"], hidden_dim=shape["hidden_dim"],
        intermediate_dim=shape["intermediate_dim"], dropout=0.0, max_sequence_length=length,
    )
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    causal_lm.compile(jit_compile=xla)

    def generate(token_ids, padding_mask):
        return causal_lm.generate(
            {"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=None
        )

    return generate


SIDES = {"keras-attn": keras_attn_generate, "keras-hub": keras_hub_generate}


def prompts(batch, prompt_length, length, vocabulary_size, seed=0):
    """Random prompts of `prompt_length` ids (none of them padding) in a
    `(batch, length)` buffer, and its padding mask."""
    rng = np.random.default_rng(seed)
    token_ids = np.zeros((batch, length), "int32")
    token_ids[:, :prompt_length] = rng.integers(3, vocabulary_size, (batch, prompt_length))
    return token_ids, np.arange(length)[None, :] < np.full((batch, 1), prompt_length)


def measure(generate, token_ids, padding_mask, repeats):
    """`(first call seconds, median steady seconds)`."""
    start = time.perf_counter()
    np.asarray(generate(token_ids, padding_mask))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(generate(token_ids, padding_mask))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def run(shape, batches, prompt_length, new_tokens, repeats, sides, settings=SETTINGS):
    length = prompt_length + new_tokens
    rows = []
    for side in sides:
        for policy, xla in settings:
            keras.mixed_precision.set_global_policy(policy)
            keras.utils.set_random_seed(0)
            try:
                generate = SIDES[side](shape, length, new_tokens, xla)
                for batch in batches:
                    token_ids, mask = prompts(batch, prompt_length, length,
                                              shape["vocabulary_size"])
                    first, steady = measure(generate, token_ids, mask, repeats)
                    rows.append(dict(
                        side=side, dtype=policy, xla=xla, batch=batch,
                        tokens_per_second=batch * new_tokens / steady,
                        seconds_per_call=steady, compile_seconds=max(first - steady, 0.0),
                    ))
                    print(_row_text(rows[-1]), flush=True)
            finally:
                keras.mixed_precision.set_global_policy("float32")
    return rows


def best_ratios(rows, batches):
    """`{batch: (best keras-attn row, best keras-hub row, ratio)}`."""
    ratios = {}
    for batch in batches:
        best = {}
        for side in SIDES:
            candidates = [r for r in rows if r["side"] == side and r["batch"] == batch]
            if candidates:
                best[side] = max(candidates, key=lambda r: r["tokens_per_second"])
        if len(best) == 2:
            ours, theirs = best["keras-attn"], best["keras-hub"]
            ratios[batch] = (ours, theirs,
                             ours["tokens_per_second"] / theirs["tokens_per_second"])
    return ratios


def _setting(row):
    return f"{row['dtype']}, XLA {'on' if row['xla'] else 'off'}"


def _row_text(row):
    return (f"{row['side']:10s} {_setting(row):26s} batch {row['batch']}: "
            f"{row['tokens_per_second']:9.1f} new tokens/s, compile {row['compile_seconds']:.1f} s")


def markdown(rows, ratios, args, shape):
    lines = [
        "## Generation: new tokens/s, keras-attn `Generator` vs keras-hub `GPT2CausalLM`"
        + (f" ({args.label})" if args.label else ""),
        "",
        f"Command: `{args.command}`; {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{_cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end of "
        f"the run. Shape "
        f"(same for both, random weights): vocabulary {shape['vocabulary_size']}, width "
        f"{shape['hidden_dim']}, {shape['num_layers']} layers, {shape['num_heads']} heads, "
        f"feed-forward {shape['intermediate_dim']}; {args.prompt_length}-token prompts, "
        f"{args.new_tokens} new tokens, greedy, no stop token. Median of {args.repeats} calls "
        "after the first; compile = first call less a steady one.",
        "",
        "| side | setting | batch | new tokens/s | s per call | first-call compile (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['side']} | {_setting(row)} | {row['batch']} | "
            f"{row['tokens_per_second']:.1f} | {row['seconds_per_call']:.3f} | "
            f"{row['compile_seconds']:.1f} |"
        )
    lines += ["", "| batch | keras-attn best | keras-hub best | ratio |",
              "| --- | --- | --- | --- |"]
    for batch, (ours, theirs, ratio) in ratios.items():
        lines.append(
            f"| {batch} | {ours['tokens_per_second']:.1f} ({_setting(ours)}) | "
            f"{theirs['tokens_per_second']:.1f} ({_setting(theirs)}) | {ratio:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def _cpu_count():
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def section_name(section, label):
    """The markdown section of a run: `section`, or `section (label)`."""
    return f"{section} ({label})" if label else section


def write_section(path, section, text):
    """Replaces (or appends) the `section` block of the markdown file."""
    import os

    begin, end = f"<!-- begin {section} -->", f"<!-- end {section} -->"
    block = f"{begin}\n{text}{end}\n"
    old = open(path).read() if os.path.exists(path) else "# Decoding speed\n\n"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as file:
        file.write(new)


def main(argv=None):
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, a few seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=list(SIDES))
    parser.add_argument("--output", default="benchmarks/results/decoding.md")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--label", help="a name for this run's own section, e.g. the "
                        "keras-attn version measured (PYTHONPATH picks it)")
    args = parser.parse_args(argv)
    args.command = "python benchmarks/generation_speed.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    shape, settings = SHAPE, SETTINGS
    if args.smoke:
        settings = SMOKE_SETTINGS
        shape = SMOKE_SHAPE
        args.repeats, args.batches = 1, [1, 2]
        args.prompt_length, args.new_tokens = 4, 8
    rows = run(shape, args.batches, args.prompt_length, args.new_tokens, args.repeats,
               args.sides, settings)
    ratios = best_ratios(rows, args.batches)
    for batch, (_, _, ratio) in ratios.items():
        print(f"batch {batch}: keras-attn best / keras-hub best = {ratio:.2f}x")
    text = markdown(rows, ratios, args, shape)
    write_section(args.output, section_name(SECTION, args.label), text)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"rows": rows, "ratios": {str(b): r for b, (_, _, r) in ratios.items()}},
                      file, indent=1)
    return rows, ratios


if __name__ == "__main__":
    main()
