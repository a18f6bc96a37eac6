"""What every tutorial script shares: its command line (`--out DIR`,
`--quick`) and writing figures into the output folder."""

import argparse
import os

import matplotlib

matplotlib.use("Agg")  # tutorials write files; no window is opened

import matplotlib.pyplot as plt  # noqa: E402


def parse_args(description, default_out, extra_flags=()):
    """`args.out` (created), `args.quick` and any `extra_flags` (each
    `(flag, help)`, a switch) from the command line."""
    parser = argparse.ArgumentParser(description=description)
    for flag, help_text in extra_flags:
        parser.add_argument(flag, action="store_true", help=help_text)
    parser.add_argument("--out", default=default_out, help="folder for the figures")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, for a check in seconds")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    return args


def save(figure, out, name):
    """Writes `figure` as `out/name` and says where."""
    path = os.path.join(out, name)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    print(f"wrote {path}")
    return path


def heatmap(ax, matrix, row_labels, column_labels, title):
    """An attention matrix as an image with its tokens on the axes."""
    ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=max(float(matrix.max()), 1e-9))
    ax.set_xticks(range(len(column_labels)), column_labels, rotation=90)
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel("keys (attended to)")
    ax.set_ylabel("queries")
    ax.set_title(title)
