"""An offline HTML attention viewer: one self-contained file, no network.

`write_attention_viewer` writes a page in the spirit of a head view: pick
the view (raw attention, or any extra view such as rollout or relevance), the
attention kind (encoder, decoder, cross: cross puts the target tokens on the
left and the source tokens on the right), the layer and the head (or the
mean of a layer's heads); hover a token on the left to see where it attends,
on the right to see what attends to it; click to pin. A heatmap beside it
shows the whole matrix and follows the hover.

It stays responsive on thousands of tokens: everything is drawn on
`<canvas>` elements (only the visible token rows, only the hovered token's
weights), and each matrix is embedded as one byte per weight on a
square-root scale, zlib-compressed and base64-encoded, decoded in the browser
(`DecompressionStream`) the first time it is shown. The script and styles
(viewer.js, viewer.css beside this module) are inlined at write time.

The URL hash holds the choice (e.g. `page.html#kind=cross&layer=1&head=all&query=3`),
so a link opens the same view.

Example:
>>> from keras_attn.models import Generator
>>> from keras_attn.interpret import attention_maps
>>> model = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
>>> maps = attention_maps(model, ["abc"])[0]
>>> write_attention_viewer("attention.html", maps, title="abc")
'attention.html'
"""

import base64
import html
import importlib.resources
import json
import zlib

import numpy as np

from keras_attn.interpret.checked_maps import check_head, check_kind, check_layer
from keras_attn.utils.arguments import ArgumentError, check_choice, check_string
from keras_attn.utils.atomic_files import write_text_atomically

RAW_VIEW = "attention"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="keras-attn">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body data-ready="0" data-errors="0">
<script>
// Before anything else: every uncaught error is written into the page,
// where a reader (or a test reading the DOM) sees it.
(function () {{
  function report(message) {{
    var box = document.getElementById("errors");
    if (box) box.textContent += message + "\\n";
    document.body.dataset.errors = String(Number(document.body.dataset.errors || 0) + 1);
  }}
  window.addEventListener("error", function (event) {{
    report("error: " + event.message + " (line " + event.lineno + ")");
  }});
  window.addEventListener("unhandledrejection", function (event) {{
    report("error: " + (event.reason && event.reason.stack || event.reason));
  }});
}})();
</script>
<header>
<h1 id="title">{title}</h1>
<div id="controls">
<label>view<select id="view"></select></label>
<label>attention<select id="kind"></select></label>
<label>layer<select id="layer"></select></label>
<label>head<select id="head"></select></label>
<label id="scores-label">token scores<select id="scores"></select></label>
</div>
<div id="hint">Hover a token on the left to see where it attends, on the right to see what
attends to it; click to pin. Rows of the heatmap are the left tokens.</div>
</header>
<pre id="errors"></pre>
<main>
<div id="tokens-pane">
<div class="headings"><span id="headings-left"></span><span id="headings-right"></span></div>
<div id="tokens-scroll"><canvas id="tokens"></canvas><div id="tokens-spacer"></div></div>
</div>
<div id="heatmap-pane">
<canvas id="heatmap"></canvas>
<div id="heatmap-caption"></div>
<div id="details"></div>
</div>
</main>
<script type="application/json" id="viewer-data">{data}</script>
<script>
{script}
</script>
</body>
</html>
"""


def _asset(name):
    text = importlib.resources.files("keras_attn.interpret").joinpath(name).read_text("utf-8")
    if "</script" in text.lower() or "</style" in text.lower():
        raise ValueError(f"{name} must not close its own <script>/<style> element")
    return text


def encode_matrix(matrix):
    """One matrix as the viewer embeds it: `{"s": scale, "n": signed, "d":
    base64 of zlib of uint8}`.

    Bytes hold `sqrt(|x| / scale)` (scale = the largest `|x|`), over 0..255
    for non-negative matrices and around 128 for signed ones, so a weight of
    0.001 next to one of 1 still shows (byte 8) and the largest keep a
    relative precision of about 1%.
    """
    matrix = np.asarray(matrix, dtype="float64")
    scale = float(np.max(np.abs(matrix))) if matrix.size else 0.0
    scale = scale or 1.0
    signed = bool(np.any(matrix < 0))
    root = np.sqrt(np.abs(matrix) / scale)
    if signed:
        quantised = 128 + np.sign(matrix) * np.round(127 * root)
    else:
        quantised = np.round(255 * root)
    payload = zlib.compress(quantised.astype("uint8").tobytes(), 6)
    return {"s": scale, "n": int(signed), "d": base64.b64encode(payload).decode("ascii")}


def _layers_and_heads(name, kind, array, maps):
    """A view's array for `kind` as `(layers, heads, queries, keys)`."""
    queries, keys = len(maps.query_tokens(kind)), len(maps.key_tokens(kind))
    array = np.asarray(array, dtype="float32")
    if array.ndim in (2, 3, 4) and array.shape[-2:] == (queries, keys):
        if not np.all(np.isfinite(array)):
            raise ArgumentError.of(f"views[{name!r}][{kind!r}]", "finite values", array,
                                   received="an array with NaN or infinite entries", verb="have")
        if array.ndim == 3:
            array = array[:, None]
        return np.reshape(array, (1,) * (4 - array.ndim) + array.shape)
    raise ArgumentError.of(
        f"views[{name!r}][{kind!r}]",
        f"shape ({queries}, {keys}), (layers, {queries}, {keys}) or "
        f"(layers, heads, {queries}, {keys}) for its {queries} query and {keys} key tokens",
        array, received=f"shape {array.shape}", verb="have",
    )


def _view_payload(name, arrays, maps, head_counts=None):
    kinds = {}
    for kind, array in arrays.items():
        if kind not in maps.kinds:
            raise ArgumentError.of(f"views[{name!r}]", f"keys among {list(maps.kinds)}", kind,
                                   received=f"a key {kind!r}", verb="have")
        array = _layers_and_heads(name, kind, array, maps)
        heads = (
            list(head_counts[kind]) if head_counts is not None else [array.shape[1]] * len(array)
        )
        kinds[kind] = {
            "heads": heads,
            "layers": [
                [encode_matrix(array[layer, head]) for head in range(heads[layer])]
                for layer in range(len(array))
            ],
        }
    return {"name": name, "kinds": kinds}


def _check_selected(selected, maps, views):
    """`selected` (what the page opens on) checked against the maps."""
    if selected is None:
        return {}
    if not isinstance(selected, dict) or set(selected) - {"view", "kind", "layer", "head"}:
        raise ArgumentError.of("selected", "a dict with keys among view, kind, layer, head",
                               selected)
    checked = dict(selected)
    if "view" in checked:
        check_choice("selected['view']", checked["view"], [RAW_VIEW, *views])
    if "kind" in checked:
        checked["kind"] = check_kind(maps, checked["kind"])
    if checked.get("view", RAW_VIEW) == RAW_VIEW and "kind" in checked:
        if "layer" in checked:
            checked["layer"] = check_layer(maps, checked["kind"], checked["layer"])
            checked["head"] = check_head(maps, checked["kind"], checked["layer"],
                                         checked.get("head"))
    if checked.get("head", "all") is None:
        checked["head"] = "all"
    return checked


def viewer_payload(maps, views=None, title=None, token_scores=None, selected=None):
    """The JSON document a viewer page embeds (see viewer.js for its layout)."""
    views = {} if views is None else views
    token_scores = {} if token_scores is None else token_scores
    if not isinstance(views, dict):
        raise ArgumentError.of("views", "a dict {view name: {kind: array}}", views)
    if RAW_VIEW in views:
        raise ValueError(
            f"`views` must not contain {RAW_VIEW!r}: that is the raw attention of `maps`. "
            f"Received: views with keys {list(views)}"
        )
    payload_views = [_view_payload(RAW_VIEW, maps.attention, maps, maps.head_counts)]
    for name, arrays in views.items():
        check_string("view name", name)
        if not isinstance(arrays, dict) or not arrays:
            raise ArgumentError.of(f"views[{name!r}]", "a non-empty dict {kind: array}", arrays)
        payload_views.append(_view_payload(name, arrays, maps))
    scores = {}
    for name, by_sequence in token_scores.items():
        check_string("token score name", name)
        scores[name] = {}
        for sequence, values in by_sequence.items():
            if sequence not in maps.tokens:
                raise ArgumentError.of(
                    f"token_scores[{name!r}]", f"keys among {list(maps.tokens)}", sequence,
                    received=f"a key {sequence!r}", verb="have",
                )
            values = np.asarray(values, dtype="float64")
            if values.shape != (len(maps.tokens[sequence]),) or not np.all(np.isfinite(values)):
                raise ArgumentError.of(
                    f"token_scores[{name!r}][{sequence!r}]",
                    f"{len(maps.tokens[sequence])} finite numbers, one per token", values,
                    received=f"shape {values.shape}",
                )
            scores[name][sequence] = [round(float(v), 6) for v in values]
    return {
        "title": title or "attention",
        "sequences": {name: list(tokens) for name, tokens in maps.tokens.items()},
        "kinds": {
            kind: {"queries": queries, "keys": keys}
            for kind, (queries, keys) in maps.sequences.items()
        },
        "views": payload_views,
        "scores": scores,
        "selected": _check_selected(selected, maps, views),
    }


def render_viewer(maps, views=None, title=None, token_scores=None, selected=None):
    """The viewer page as a string (what `write_attention_viewer` writes)."""
    payload = viewer_payload(maps, views, title, token_scores, selected)
    # "<" escaped inside the JSON: no token can close the script element.
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return _PAGE.format(
        title=html.escape(payload["title"]),
        css=_asset("viewer.css"),
        script=_asset("viewer.js"),
        data=data,
    )


def write_attention_viewer(path, maps, views=None, title=None, token_scores=None,
                           selected=None):
    """Writes the attention of one text as a self-contained HTML page.

    Args:
        path: the `.html` file to write (atomically; its folder must exist).
        maps: an `AttentionMaps` (one text's, from `attention_maps`).
        views: extra matrices to switch to besides the raw attention:
            `{view name: {kind: array}}`, each array `(queries, keys)` (e.g.
            rollout, relevance), `(layers, queries, keys)` or
            `(layers, heads, queries, keys)`; signed values are drawn in two
            colours.
        title: the page's title (default "attention").
        token_scores: per-token numbers drawn as bars behind the tokens, e.g.
            attributions: `{name: {sequence name: one number per token}}`.
        selected: what the page opens on, e.g. `{"kind": "cross", "layer":
            1, "head": None}` (keys `view`, `kind`, `layer`, `head`; head
            `None` is the mean of the layer's heads). A URL hash overrides it.

    Returns:
        `path`.

    Example:
    >>> from keras_attn.interpret import AttentionMaps
    >>> maps = AttentionMaps(tokens={"tokens": ["a", "b", "c"]},
    ...                      attention={"encoder": np.full((1, 2, 3, 3), 1 / 3, "float32")},
    ...                      sequences={"encoder": ("tokens", "tokens")},
    ...                      head_counts={"encoder": [2]})
    >>> write_attention_viewer("attention.html", maps, title="uniform",
    ...                        views={"identity": {"encoder": np.eye(3)}})
    'attention.html'
    >>> "<title>uniform</title>" in open("attention.html", encoding="utf-8").read()
    True
    """
    write_text_atomically(path, render_viewer(maps, views, title, token_scores, selected))
    return path

