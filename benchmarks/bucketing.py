"""Length bucketing on long-tailed translation data: a translator recipe's
step time and time per epoch with `training.bucketing` on and off.

The pairs come from the built-in `dates` task: each example joins a
long-tailed number of dates (1 + a geometric draw, at most `--max-dates`),
so most sources are one date (about 35 bytes) and a few are eight; the
recipe's lengths fit the longest. Both runs train the same recipe (byte
level, the `tiny` translator) for `--epochs` epochs; the first epoch
(compilation: one trace per bucket) is excluded, the others give the median
epoch time and median step time.

    python benchmarks/bucketing.py [--num-examples 3000] [--epochs 3]
    python benchmarks/bucketing.py --smoke   # tiny, seconds

With `--data-path FILE` (`source<TAB>target` rows, e.g. real sentence pairs
from `benchmarks/message_catalog_pairs.py`) the first `--num-examples` rows
train a 2+2-layer width-256 translator with a SentencePiece vocabulary of
4,000 pieces padded to 40 / 48 tokens: the setup of a user's own file.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_attn.data import load_builtin  # noqa: E402
from keras_attn.recipes import validate_recipe  # noqa: E402
from keras_attn.recipes.train import train_recipe  # noqa: E402


def long_tailed_pairs(num_examples, max_dates, seed=0):
    """`(sources, targets)`: each joins 1 + Geometric(0.55) dates (capped)."""
    rng = np.random.default_rng(seed)
    counts = np.minimum(rng.geometric(0.55, num_examples), max_dates)
    dates = load_builtin("dates", num_examples=int(counts.sum()), seed=seed)
    sources, targets, start = [], [], 0
    for count in counts:
        sources.append(" ; ".join(dates.sources[start:start + count]))
        targets.append(" ".join(dates.targets[start:start + count]))
        start += count
    return sources, targets


def read_pairs(path, num_examples):
    """The first `num_examples` `source<TAB>target` rows of `path` (a header
    row `source<TAB>target` is skipped)."""
    sources, targets = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            source, _, target = line.rstrip("\n").partition("\t")
            if (source, target) == ("source", "target") or not source or not target:
                continue
            sources.append(source)
            targets.append(target)
            if len(sources) == num_examples:
                break
    return sources, targets


class Timer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.epochs, self.steps = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()
        self.steps.append([])

    def on_train_batch_begin(self, batch, logs=None):
        self.step_started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1].append(time.perf_counter() - self.step_started)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self.epoch_started)


FILE_MODEL = {"num_encoder_layers": 2, "num_decoder_layers": 2, "hidden_dim": 256,
              "intermediate_dim": 1024, "num_heads": 4, "dropout": 0.1}


def run_recipe(tsv_path, source_length, target_length, bucketing, args, work):
    from_file = args.data_path is not None
    recipe = validate_recipe({
        "task": "translator",
        "preset": "tiny",
        "model": {"source_length": source_length, "target_length": target_length,
                  **(FILE_MODEL if from_file else {})},
        "tokenizer": ({"type": "sentencepiece", "vocabulary_size": 4000} if from_file
                      else {"type": "byte"}),
        "data": {"train": {"source": "files", "task": "translation", "path": tsv_path}},
        "training": {"epochs": args.epochs, "batch_size": args.batch_size,
                     "bucketing": bucketing, "tensorboard": False},
    })
    timer = Timer()
    output = os.path.join(work, "on" if bucketing else "off")
    record = train_recipe(recipe, output, log=lambda line: None, verbose=0, callbacks=[timer])
    steady_epochs = timer.epochs[1:]
    steady_steps = [s for epoch in timer.steps[1:] for s in epoch]
    return {
        "bucketing": bucketing,
        "first_epoch_seconds": timer.epochs[0],
        "epoch_seconds": statistics.median(steady_epochs),
        "step_ms": 1000 * statistics.median(steady_steps),
        "steps_per_epoch": len(timer.steps[-1]),
        "final_loss": record["training"].get("final_loss"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-examples", type=int, default=3000)
    parser.add_argument("--max-dates", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", default="benchmarks/results/bucketing.json")
    parser.add_argument("--data-path", help="a TSV of real pairs instead of joined dates")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_examples, args.max_dates, args.epochs, args.batch_size = 64, 3, 2, 8
    if args.data_path:
        sources, targets = read_pairs(args.data_path, args.num_examples)
        source_length, target_length = 40, 48
    else:
        sources, targets = long_tailed_pairs(args.num_examples, args.max_dates)
    source_bytes = np.array([len(s.encode()) for s in sources])
    target_bytes = np.array([len(t.encode()) for t in targets])
    if not args.data_path:
        # Room for the longest pair and its special tokens, on a multiple of 8.
        source_length = int(np.ceil((source_bytes.max() + 2) / 8) * 8)
        target_length = int(np.ceil((target_bytes.max() + 2) / 8) * 8)
    with tempfile.TemporaryDirectory() as work:
        tsv_path = os.path.join(work, "pairs.tsv")
        with open(tsv_path, "w", encoding="utf-8") as f:
            f.writelines(f"{s}\t{t}\n" for s, t in zip(sources, targets))
        rows = [run_recipe(tsv_path, source_length, target_length, flag, args, work)
                for flag in (False, True)]
    off, on = rows
    speedup = off["epoch_seconds"] / on["epoch_seconds"]
    command = "python benchmarks/bucketing.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    lines = [
        f"Command: `{command.strip()}`; {datetime.date.today().isoformat()}; "
        f"{platform.machine()}, {os.cpu_count()} logical CPUs.",
        "",
        (f"Data: the first {len(sources)} pairs of `{args.data_path}`; " if args.data_path else
         f"Data: {args.num_examples} pairs of 1..{args.max_dates} joined `dates` examples; ")
        + f"source bytes median {int(np.median(source_bytes))}, p90 "
        f"{int(np.percentile(source_bytes, 90))}, max {source_bytes.max()} (source_length "
        f"{source_length}); target bytes median {int(np.median(target_bytes))}, max "
        f"{target_bytes.max()} (target_length {target_length}). Recipe: "
        + ("2+2 layers, width 256, SentencePiece 4,000 pieces" if args.data_path
           else "tiny translator, byte level")
        + f", batch {args.batch_size}, {args.epochs} epochs (first excluded).",
        "",
        "| training.bucketing | steps/epoch | median ms/step | s/epoch | first epoch s | "
        "final loss |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {str(row['bucketing']).lower()} | {row['steps_per_epoch']} | "
            f"{row['step_ms']:.1f} | {row['epoch_seconds']:.2f} | "
            f"{row['first_epoch_seconds']:.1f} | {row['final_loss']:.3f} |"
        )
    lines += ["", f"Bucketing speed-up per epoch: **{speedup:.2f}x**", ""]
    table = "\n".join(lines)
    results = {"rows": rows, "speedup_per_epoch": speedup, "markdown": table}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    print(table)
    return results


if __name__ == "__main__":
    main()
