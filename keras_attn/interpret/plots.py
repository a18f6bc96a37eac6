"""Matplotlib figures of what `keras_attn.interpret` computes: attention
heatmaps with their tokens, a layers x heads grid, token score bars, a
translation's alignment, head importance and the pruning curve.

Every function returns a `matplotlib.figure.Figure` drawn on the Agg canvas
(no display, no `pyplot` state: it works headless and in threads), and
`save_figure` writes it as PNG or SVG. A function that takes `ax` draws into
that axes of your own figure instead and returns its figure.

Long inputs stay legible: figures grow with the tokens up to a cap, and past
what fits at a readable font size only every k-th token is labelled (the
ticks then sit at the labelled positions).

Example:
>>> from keras_attn.models import Classifier
>>> from keras_attn.interpret import attention_maps
>>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
>>> maps = attention_maps(model, ["hello"])[0]
>>> figure = plot_attention_head(maps, "encoder", layer=0, head=1)
>>> [label.get_text() for label in figure.axes[0].get_xticklabels()]
['[CLS]', 'h', 'e', 'l', 'l', 'o', '[SEP]']
>>> save_figure(figure, "head.svg")
"""

import io
import math
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_attn.interpret.checked_maps import (
    check_kind,
    check_matrix,
    check_token_scores,
    head_matrix,
)
from keras_attn.utils.arguments import ArgumentError
from keras_attn.utils.atomic_files import write_bytes_atomically

# Inches per token before the cap, and the cap, of a heatmap side or a bar chart.
_INCHES_PER_TOKEN = 0.28
_MIN_INCHES, _MAX_INCHES = 3.0, 18.0
_FONT_SIZE = 8
# A label needs about this many font sizes of room (its height plus a gap).
_LABEL_PITCH = 1.4
_LONGEST_LABEL = 16


def display_token(token):
    """A token as a tick label: whitespace and control characters shown as
    escapes, mathtext's `$` escaped, long tokens shortened."""
    shown = "".join(
        repr(character)[1:-1] if not character.isprintable() or character in "\t\n\r" else character
        for character in token
    )
    if shown == " ":
        shown = "␣"
    if len(shown) > _LONGEST_LABEL:
        shown = shown[: _LONGEST_LABEL - 1] + "…"
    return shown.replace("$", r"\$")


def labelled_positions(count, inches, font_size=_FONT_SIZE):
    """The token positions that get a label on an axis `inches` long: all of
    them when they fit at `font_size`, else every k-th (0, k, 2k, ...)."""
    room = max(1, int(inches * 72 / (font_size * _LABEL_PITCH)))
    step = max(1, math.ceil(count / room))
    return list(range(0, count, step))


def _side_inches(count):
    return float(np.clip(count * _INCHES_PER_TOKEN, _MIN_INCHES, _MAX_INCHES))


def _new_figure(width, height):
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _figure_and_axes(ax, width, height):
    if ax is not None:
        return ax.figure, ax
    figure = _new_figure(width, height)
    return figure, figure.add_subplot()


def _label_axis(axis, tokens, inches, rotation=0):
    positions = labelled_positions(len(tokens), inches)
    axis.set_ticks(positions)
    axis.set_ticklabels([display_token(tokens[i]) for i in positions], rotation=rotation,
                        fontsize=_FONT_SIZE)


def _color_limits(matrix):
    """`(cmap, vmin, vmax)`: a sequential map from 0 for non-negative data, a
    diverging one centred on 0 for signed data (e.g. relevance)."""
    low, high = float(np.min(matrix)), float(np.max(matrix))
    if low < 0:
        bound = max(-low, high) or 1.0
        return "RdBu_r", -bound, bound
    return "viridis", 0.0, high or 1.0


def _heatmap(ax, matrix, query_tokens, key_tokens, title, colorbar=True,
             query_label="queries", key_label="keys"):
    cmap, vmin, vmax = _color_limits(matrix)
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    width, height = ax.figure.get_size_inches()
    _label_axis(ax.xaxis, key_tokens, width * 0.8, rotation=90)
    _label_axis(ax.yaxis, query_tokens, height * 0.8)
    ax.set_xlabel(key_label)
    ax.set_ylabel(query_label)
    if title:
        ax.set_title(title, fontsize=_FONT_SIZE + 2)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, shrink=0.8)
    return image


def plot_matrix(matrix, query_tokens, key_tokens, title=None, ax=None):
    """A heatmap of any `(queries, keys)` matrix (attention, rollout,
    relevance) with its tokens on the axes.

    Args:
        matrix: array `(len(query_tokens), len(key_tokens))`; signed values
            get a diverging colour map centred on zero.
        query_tokens, key_tokens: the row and column token strings.
        title: optional title.
        ax: optional matplotlib axes to draw into.

    Returns:
        The `Figure`.

    Example:
    >>> figure = plot_matrix(np.eye(3), ["x", "y", "z"], ["a", "b", "c"], title="identity")
    >>> len(figure.axes), [label.get_text() for label in figure.axes[0].get_yticklabels()]
    (2, ['x', 'y', 'z'])
    """
    matrix = check_matrix("matrix", matrix, query_tokens, key_tokens)
    figure, ax = _figure_and_axes(
        ax, _side_inches(len(key_tokens)) + 1.5, _side_inches(len(query_tokens)) + 1.0
    )
    _heatmap(ax, matrix, query_tokens, key_tokens, title)
    return figure


def plot_attention_head(maps, kind, layer, head, ax=None):
    """One head's attention (or the mean of a layer's heads) as a heatmap.

    Args:
        maps: an `AttentionMaps` (from `attention_maps`).
        kind: `"encoder"`, `"decoder"` or `"cross"`.
        layer: the layer (negative counts from the last).
        head: the head, or `None` for the mean over the layer's heads.
        ax: optional matplotlib axes to draw into.

    Returns:
        The `Figure`: keys along x, queries along y, both labelled.

    Example:
    >>> from keras_attn.interpret import AttentionMaps
    >>> maps = AttentionMaps(tokens={"tokens": ["a", "b", "c"]},
    ...                      attention={"encoder": np.full((2, 2, 3, 3), 1 / 3, "float32")},
    ...                      sequences={"encoder": ("tokens", "tokens")},
    ...                      head_counts={"encoder": [2, 1]})  # layer 1 has one head
    >>> figure = plot_attention_head(maps, "encoder", layer=-1, head=None)
    >>> figure.axes[0].get_title()
    'encoder attention, layer 1, mean of heads'
    """
    matrix, queries, keys, layer, head = head_matrix(maps, kind, layer, head)
    which = "mean of heads" if head is None else f"head {head}"
    figure, ax = _figure_and_axes(
        ax, _side_inches(len(keys)) + 1.5, _side_inches(len(queries)) + 1.0
    )
    query_sequence, key_sequence = maps.sequences[kind]
    _heatmap(ax, matrix, queries, keys, f"{kind} attention, layer {layer}, {which}",
             query_label=query_sequence, key_label=key_sequence)
    return figure


def plot_attention_grid(maps, kind, cell_inches=1.6):
    """Every layer (rows) and head (columns) of one attention kind.

    Cells share one colour scale (0 to the largest weight). Tokens label
    the outer axes when there are few enough to read in a cell; a layer
    with fewer heads than the widest leaves its extra cells empty.

    Args:
        maps: an `AttentionMaps`.
        kind: `"encoder"`, `"decoder"` or `"cross"`.
        cell_inches: the side of one cell.

    Returns:
        The `Figure`.

    Example:
    >>> from keras_attn.interpret import AttentionMaps
    >>> maps = AttentionMaps(tokens={"tokens": ["a", "b", "c"]},
    ...                      attention={"encoder": np.full((2, 2, 3, 3), 1 / 3, "float32")},
    ...                      sequences={"encoder": ("tokens", "tokens")},
    ...                      head_counts={"encoder": [2, 1]})  # layer 1 has one head
    >>> figure = plot_attention_grid(maps, "encoder")
    >>> len(figure.axes), sum(ax.axison for ax in figure.axes)  # 2 x 2 cells, 3 heads, colour bar
    (5, 4)
    """
    kind = check_kind(maps, kind)
    attention = maps.attention[kind]
    layers, heads = attention.shape[:2]
    queries, keys = maps.query_tokens(kind), maps.key_tokens(kind)
    figure = _new_figure(heads * cell_inches + 1.0, layers * cell_inches + 0.6)
    grid = figure.subplots(layers, heads, squeeze=False, sharex=True, sharey=True)
    vmax = float(attention.max()) or 1.0
    image = None
    for layer in range(layers):
        for head in range(heads):
            ax = grid[layer, head]
            if head >= maps.head_counts[kind][layer]:
                ax.set_axis_off()
                continue
            image = ax.imshow(attention[layer, head], cmap="viridis", vmin=0.0, vmax=vmax,
                              aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=_FONT_SIZE)
            if head == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=_FONT_SIZE)
    # Token labels only where a cell has room for all of them.
    if len(labelled_positions(max(len(queries), len(keys)), cell_inches, 5)) == max(
        len(queries), len(keys)
    ):
        for ax in grid[-1]:
            if ax.axison:
                ax.set_xticks(range(len(keys)), [display_token(t) for t in keys],
                              rotation=90, fontsize=5)
        for ax in grid[:, 0]:
            ax.set_yticks(range(len(queries)), [display_token(t) for t in queries], fontsize=5)
    if image is not None:
        figure.colorbar(image, ax=grid, shrink=0.6)
    figure.suptitle(f"{kind} attention: layers x heads", fontsize=_FONT_SIZE + 2)
    return figure


def plot_token_scores(tokens, scores, title=None, ax=None):
    """One bar per token: a rollout row, relevance, or attributions.

    Args:
        tokens: the token strings.
        scores: one number per token; negative bars are drawn in another
            colour than positive ones.
        title: optional title.
        ax: optional matplotlib axes to draw into.

    Returns:
        The `Figure`, tokens along x.

    Example:
    >>> figure = plot_token_scores(["a", "b", "c"], [0.5, -0.2, 0.1], title="attributions")
    >>> len(figure.axes[0].patches), figure.axes[0].get_title()  # one bar per token
    (3, 'attributions')
    """
    scores = check_token_scores("scores", scores, tokens)
    width = float(np.clip(len(tokens) * 0.22, 4.0, 24.0))
    figure, ax = _figure_and_axes(ax, width, 3.2)
    colors = np.where(scores < 0, "#c0392b", "#2e6fb7")
    ax.bar(np.arange(len(tokens)), scores, color=colors, width=0.8)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlim(-0.6, len(tokens) - 0.4)
    _label_axis(ax.xaxis, tokens, figure.get_size_inches()[0] * 0.9, rotation=90)
    ax.set_ylabel("score")
    if title:
        ax.set_title(title, fontsize=_FONT_SIZE + 2)
    return figure


def plot_alignment(maps_or_matrix, source_tokens=None, target_tokens=None, layer=-1, head=None,
                   ax=None):
    """A translation's cross-attention: which source token each target
    token looks at.

    Args:
        maps_or_matrix: an `AttentionMaps` with a `"cross"` kind (the
            translator's; `layer` and `head` pick the matrix, by default the
            mean of the last layer's heads), or any `(target, source)` matrix
            (e.g. cross-attention relevance).
        source_tokens, target_tokens: the tokens; taken from the maps when
            not given, required with a matrix.
        layer, head: the matrix of the maps to show.
        ax: optional matplotlib axes to draw into.

    Returns:
        The `Figure`: source tokens along x, target tokens along y.

    Example:
    >>> figure = plot_alignment(np.eye(2), source_tokens=["un", "chat"],
    ...                         target_tokens=["a", "cat"])
    >>> ax = figure.axes[0]
    >>> ax.get_xlabel(), ax.get_ylabel(), [label.get_text() for label in ax.get_xticklabels()]
    ('source', 'target', ['un', 'chat'])
    """
    if hasattr(maps_or_matrix, "attention"):
        matrix, targets, sources, layer, head = head_matrix(maps_or_matrix, "cross", layer, head)
        source_tokens = sources if source_tokens is None else source_tokens
        target_tokens = targets if target_tokens is None else target_tokens
        which = "mean of heads" if head is None else f"head {head}"
        title = f"cross-attention alignment, layer {layer}, {which}"
    else:
        if source_tokens is None or target_tokens is None:
            raise ValueError(
                "plot_alignment of a matrix needs `source_tokens` and `target_tokens`. "
                f"Received: source_tokens={source_tokens!r}, target_tokens={target_tokens!r}"
            )
        matrix, title = maps_or_matrix, "alignment"
    matrix = check_matrix("matrix", matrix, target_tokens, source_tokens)
    figure, ax = _figure_and_axes(
        ax, _side_inches(len(source_tokens)) + 1.5, _side_inches(len(target_tokens)) + 1.0
    )
    _heatmap(ax, matrix, target_tokens, source_tokens, title,
             query_label="target", key_label="source")
    return figure


def plot_head_importance(importance, title="head importance", ax=None):
    """Importance of each head as a layers x heads heatmap, values written
    in the cells when there is room.

    Args:
        importance: array `(layers, heads)`; `NaN` marks a head a layer does
            not have (left blank).
        title: the title.
        ax: optional matplotlib axes to draw into.

    Returns:
        The `Figure`.

    Example:
    >>> figure = plot_head_importance(np.array([[0.1, 0.9], [0.5, np.nan]]))
    >>> [text.get_text() for text in figure.axes[0].texts]  # the missing head stays blank
    ['0.10', '0.90', '0.50']
    """
    importance = np.asarray(importance, dtype="float64")
    if importance.ndim != 2 or 0 in importance.shape:
        raise ArgumentError.of(
            "importance", "shape (layers, heads)", importance,
            received=f"importance with shape {importance.shape}", verb="have",
        )
    layers, heads = importance.shape
    figure, ax = _figure_and_axes(
        ax, float(np.clip(heads * 0.6 + 1.8, 3.0, 16.0)),
        float(np.clip(layers * 0.45 + 1.0, 2.0, 12.0)),
    )
    shown = np.ma.masked_invalid(importance)
    image = ax.imshow(shown, cmap="magma", aspect="auto", interpolation="nearest")
    ax.set_xticks(range(heads), [str(h) for h in range(heads)], fontsize=_FONT_SIZE)
    ax.set_yticks(range(layers), [str(layer) for layer in range(layers)], fontsize=_FONT_SIZE)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if layers * heads <= 256:
        middle = float(np.nanmean(importance)) if np.isfinite(importance).any() else 0.0
        for (layer, head), value in np.ndenumerate(importance):
            if np.isfinite(value):
                ax.text(head, layer, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if value > middle else "white")
    ax.set_title(title, fontsize=_FONT_SIZE + 2)
    figure.colorbar(image, ax=ax, shrink=0.8)
    return figure


def plot_pruning_curve(curve, metric_name="metric", title="pruning curve", ax=None):
    """The task metric against the share of heads pruned.

    Args:
        curve: `(share, metric)` pairs (a list of pairs or an `(n, 2)`
            array), shares in [0, 1].
        metric_name: the y-axis label (e.g. `"accuracy"`, `"bleu"`).
        title: the title.
        ax: optional matplotlib axes to draw into.

    Returns:
        The `Figure`, shares shown as percentages.

    Example:
    >>> figure = plot_pruning_curve([(0.0, 0.9), (0.25, 0.85), (0.5, 0.6)], "accuracy")
    >>> figure.axes[0].get_xlabel(), figure.axes[0].get_ylabel()
    ('heads pruned (%)', 'accuracy')
    """
    points = np.asarray(curve, dtype="float64")
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ArgumentError.of(
            "curve", "a non-empty list of (share, metric) pairs", curve,
            received=f"curve with shape {points.shape}",
        )
    if np.any((points[:, 0] < 0) | (points[:, 0] > 1)):
        raise ArgumentError.of("curve", "shares in [0, 1]", curve,
                               received=f"shares {points[:, 0].tolist()}", verb="have")
    points = points[np.argsort(points[:, 0], kind="stable")]
    figure, ax = _figure_and_axes(ax, 5.0, 3.4)
    ax.plot(points[:, 0] * 100, points[:, 1], marker="o", color="#2e6fb7")
    ax.set_xlabel("heads pruned (%)")
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=_FONT_SIZE + 2)
    return figure


FIGURE_FORMATS = {".png": "png", ".svg": "svg"}


def save_figure(figure, path, dpi=150):
    """Writes `figure` to `path` as PNG or SVG (by the suffix), atomically:
    a reader never sees half a file, and a failure leaves what was there.

    Args:
        figure: a matplotlib `Figure`.
        path: a `.png` or `.svg` file; its folder must exist.
        dpi: resolution of a PNG.

    Example:
    >>> figure = plot_matrix(np.eye(2), ["a", "b"], ["a", "b"])
    >>> save_figure(figure, "matrix.png")
    >>> with open("matrix.png", "rb") as f:
    ...     f.read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FIGURE_FORMATS:
        raise ValueError(
            f"`path` must end in {' or '.join(FIGURE_FORMATS)}. Received: path={path!r}"
        )
    image_format = FIGURE_FORMATS[suffix]
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format, dpi=dpi)
    write_bytes_atomically(path, buffer.getvalue())
