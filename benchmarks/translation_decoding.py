"""Translation decoding speed: sentences/s of a keras-attn `Translator`,
greedy and beam search with 4 beams.

A translator preset (default `small`: 3+3 layers, width 256) with random
weights and the given source / target lengths translates a batch of the
built-in number-word sentences (`keras_attn.data.number_words`). Random
weights rarely emit `[EOS]`, so most rows decode to the end of the target
buffer: the figures are close to the worst case per sentence. The first call
of each search (trace + XLA compile) is reported apart; the steady figure is
the median of `--repeats` calls after it.

    python benchmarks/translation_decoding.py [--preset small] [--batch 32] [--repeats 3]
    python benchmarks/translation_decoding.py --smoke --output /tmp/decoding.md --json /tmp/t.json

The markdown table replaces this script's section of `--output` (the
generation section, written by `generation_speed.py`, is kept).
"""

import argparse
import json
import os
import platform
import sys
import time

import keras

from keras_attn.data import number_words
from keras_attn.models import Translator

# The sibling script's timing and markdown helpers (benchmarks/ is no package).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generation_speed import _cpu_count, measure, section_name, write_section  # noqa: E402

SECTION = "translation_decoding"
SEARCHES = [("greedy", 1), ("beam", 4)]


def run(preset, source_length, target_length, batch, repeats, overrides=None):
    keras.utils.set_random_seed(0)
    translator = Translator.from_preset(
        preset, source_length=source_length, target_length=target_length, **(overrides or {})
    )
    sources, _ = number_words(batch, seed=0)
    source_ids, _ = translator.encode_sources(sources)
    rows = []
    for search, beams in SEARCHES:
        first, steady = measure(
            lambda ids, _, beams=beams: translator.translate_ids(ids, beam_width=beams),
            source_ids, None,
            repeats,
        )
        rows.append(dict(search=search, beams=beams, batch=batch,
                         sentences_per_second=batch / steady, seconds_per_call=steady,
                         compile_seconds=max(first - steady, 0.0)))
        print(f"{search} ({beams} beams), batch {batch}: {batch / steady:.1f} sentences/s, "
              f"compile {rows[-1]['compile_seconds']:.1f} s", flush=True)
    return rows


def markdown(rows, args):
    lines = [
        "## Translation decoding: sentences/s of a keras-attn `Translator`"
        + (f" ({args.label})" if args.label else ""),
        "",
        f"Command: `{args.command}`; {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{_cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end of "
        f"the run. Preset "
        f"`{args.preset}` with random weights, source length {args.source_length}, target "
        f"length {args.target_length}, float32, XLA; a batch of {args.batch} number-word "
        f"sentences; median of {args.repeats} calls after the first (random weights seldom "
        "emit [EOS]: rows mostly decode to the end of the target buffer).",
        "",
        "| search | beams | batch | sentences/s | s per call | first-call compile (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['search']} | {row['beams']} | {row['batch']} | "
            f"{row['sentences_per_second']:.1f} | {row['seconds_per_call']:.3f} | "
            f"{row['compile_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, a few seconds")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--source-length", type=int, default=48)
    parser.add_argument("--target-length", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="benchmarks/results/decoding.md")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--label", help="a name for this run's own section, e.g. the "
                        "keras-attn version measured (PYTHONPATH picks it)")
    args = parser.parse_args(argv)
    args.command = "python benchmarks/translation_decoding.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    overrides = None
    if args.smoke:
        args.preset, args.source_length, args.target_length = "tiny", 16, 6
        args.batch, args.repeats = 2, 1
        overrides = dict(num_encoder_layers=1, num_decoder_layers=1)
    rows = run(args.preset, args.source_length, args.target_length, args.batch, args.repeats,
               overrides)
    write_section(args.output, section_name(SECTION, args.label), markdown(rows, args))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"rows": rows}, file, indent=1)
    return rows


if __name__ == "__main__":
    main()
