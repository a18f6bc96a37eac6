"""The `keras-attn` command line."""

import argparse
import json
import os
import sys


def _check_writable_file(option, path):
    """Fails before any training when an output file cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{option}: folder {folder!r} does not exist (given {path!r})")


def _quickstart(args):
    if args.metrics_json:
        _check_writable_file("--metrics-json", args.metrics_json)
    from keras_attn.quickstart import run_quickstart

    metrics = run_quickstart(fast=args.fast, seed=args.seed, output_dir=args.output_dir)
    if args.metrics_json:
        with open(args.metrics_json, "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-attn",
        description="Attention layers and Transformer models for Keras 3.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks and TensorFlow logs"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    quickstart = commands.add_parser(
        "quickstart",
        help="train the tiny translator, classifier and generator on built-in data",
        description=(
            "Trains the three tiny ready-made models on data generated on the fly (no "
            "download): a translator (spelled-out numbers to digits), a classifier (sentiment "
            "with negation) and a generator (runs of letters). Prints their metrics and a few "
            "outputs, and optionally saves them as preset directories."
        ),
    )
    quickstart.add_argument(
        "--fast", action="store_true", help="less data and fewer epochs (for tests and CI)"
    )
    quickstart.add_argument(
        "--output-dir",
        metavar="DIR",
        help="save the trained models here (DIR/translator, DIR/classifier, DIR/generator)",
    )
    quickstart.add_argument("--seed", type=int, default=0, help="seed for data and weights")
    quickstart.add_argument(
        "--metrics-json", metavar="PATH", help="also write the metrics to this JSON file"
    )
    quickstart.set_defaults(handler=_quickstart)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return args.handler(args)
    except (ValueError, OSError) as error:
        if args.debug:
            raise
        print(f"keras-attn {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
