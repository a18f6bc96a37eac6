"""One entry point for every way of looking inside a model: `explain`.

`explain(model, texts, method)` runs one method of the method table and
returns an `Explanation` per text: the attention maps (always: they carry
the tokens), the method's `(queries, keys)` matrices per attention kind
("views", e.g. rollout) and its per-token scores (e.g. attributions).
`write_explanation` turns one into the HTML viewer or a PNG / SVG figure;
`keras-attn explain` is both in one command.

Adding a method is one entry: `register_method(ExplainMethod(...))` with a
`compute(model, texts, maps, target, **options)` that returns, per text, a
`(views, token_scores)` pair.

Example:
>>> from keras_attn.models import Classifier
>>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
>>> explanation = explain(model, "hi", "attention")
>>> explanation.maps.query_tokens("encoder"), explanation.views, explanation.token_scores
(['[CLS]', 'h', 'i', '[SEP]'], {}, {})
>>> write_explanation(explanation, "hi.html")
'hi.html'
"""

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from keras_attn.interpret.attention_attribution import attention_attribution
from keras_attn.interpret.attention_maps import AttentionMaps, attention_maps
from keras_attn.interpret.checked_maps import check_head, check_kind, check_layer
from keras_attn.interpret.flow import attention_flow
from keras_attn.interpret.integrated_gradients import integrated_gradients
from keras_attn.interpret.relevance import relevance
from keras_attn.interpret.rollout import attention_rollout
from keras_attn.utils.arguments import ArgumentError, check_choice, check_string


@dataclasses.dataclass
class Explanation:
    """What one method found about one text.

    Attributes:
        method: the method's name (a key of `METHODS`).
        maps: the text's `AttentionMaps`: tokens, and every layer's and
            head's raw attention.
        views: view name -> attention kind -> float array `(queries, keys)`
            (or with leading `(layers,)` / `(layers, heads)` axes), rows and
            columns named by `maps.query_tokens(kind)` / `maps.key_tokens(kind)`.
        token_scores: score name -> sequence name (`"tokens"`, `"source"`,
            `"target"`) -> one float per token of `maps.tokens[sequence]`.
        target: the output explained (class, token position, ...), or None.

    Example:
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> explanation = explain(model, "hi", "rollout")
    >>> explanation.method, explanation.views["rollout"]["encoder"].shape
    ('rollout', (4, 4))
    >>> explanation.maps.query_tokens("encoder"), explanation.token_scores
    (['[CLS]', 'h', 'i', '[SEP]'], {})
    """

    method: str
    maps: AttentionMaps
    views: dict = dataclasses.field(default_factory=dict)
    token_scores: dict = dataclasses.field(default_factory=dict)
    target: object = None


@dataclasses.dataclass(frozen=True)
class ExplainMethod:
    """An entry of the method table.

    Attributes:
        name: what `explain(..., method=name)` and `--method` call it.
        summary: one line for `--help`.
        compute: `compute(model, texts, maps, target, **options)` -> one
            `(views, token_scores)` pair per text (see `Explanation`);
            `maps` are the texts' `AttentionMaps`, already computed.
        takes_target: whether the method explains one chosen output
            (a class, a next token, a target token): `target` is passed on;
            otherwise giving one is an error.
        options: names of the extra keyword options `compute` accepts.
        reads_texts: `compute` runs the model on the texts itself (gradient
            methods): it gets `targets=` too, and cannot follow a continuation
            generated with `max_new_tokens`.

    Example:
    >>> ig = METHODS["ig"]
    >>> ig.takes_target, ig.reads_texts, ig.options
    (True, True, ('baseline', 'steps', 'method', 'batch_size', 'score'))
    """

    name: str
    summary: str
    compute: Callable
    takes_target: bool = False
    options: tuple = ()
    reads_texts: bool = False


METHODS = {}

# Options `explain` itself uses to choose what the model looks at.
_INPUT_OPTIONS = ("targets", "max_new_tokens")


def register_method(method):
    """Adds `method` (an `ExplainMethod`) to the table; a name may be
    registered once. Returns `method`.

    Example (a method scoring each token by its length in characters):
    >>> def token_lengths(model, texts, maps, target):
    ...     return [({}, {"length": {"tokens": [len(t) for t in m.tokens["tokens"]]}})
    ...             for m in maps]
    >>> _ = register_method(ExplainMethod("token_lengths", "characters per token",
    ...                                   token_lengths))
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> explain(model, "hi", "token_lengths").token_scores
    {'length': {'tokens': [5, 1, 1, 5]}}
    >>> del METHODS["token_lengths"]  # the table is global: the example takes it off again
    """
    if not isinstance(method, ExplainMethod):
        raise ArgumentError.of("method", "an ExplainMethod", method)
    if method.name in METHODS:
        raise ValueError(f"An explain method named {method.name!r} is already registered.")
    METHODS[method.name] = method
    return method


def _raw_attention(model, texts, maps, target):
    # The raw weights are the maps themselves: nothing more to compute.
    return [({}, {}) for _ in maps]


register_method(
    ExplainMethod(
        name="attention",
        summary="raw attention weights of every layer and head",
        compute=_raw_attention,
    )
)


# Self-attention kinds rollout and flow follow; rollout also carries a
# translator's source tokens through cross-attention.
_ROLLOUT_KINDS = ("encoder", "decoder", "cross")
_FLOW_KINDS = ("encoder", "decoder")


def _per_kind(function, kinds, name):
    def compute(model, texts, maps, target, residual=0.5):
        # Rollout and flow read the maps only.
        return [
            ({name: {kind: function(text_maps, kind=kind, residual=residual)
                     for kind in text_maps.kinds if kind in kinds}}, {})
            for text_maps in maps
        ]
    return compute


register_method(
    ExplainMethod(
        name="rollout",
        summary="attention rollout: heads averaged, residual mixed in, multiplied over layers",
        compute=_per_kind(attention_rollout, _ROLLOUT_KINDS, "rollout"),
        options=("residual",),
    )
)
register_method(
    ExplainMethod(
        name="flow",
        summary="attention flow: maximum flow through the layers' attention graph (short inputs)",
        compute=_per_kind(attention_flow, _FLOW_KINDS, "flow"),
        options=("residual",),
    )
)


def _relevance(model, texts, maps, target, targets=None, score="logit"):
    return [
        ({"relevance": found.relevance}, {"relevance": found.token_scores})
        for found in relevance(model, texts, target=target, targets=targets, score=score)
    ]


def _integrated_gradients(model, texts, maps, target, targets=None, **options):
    return [
        ({}, {"integrated gradients": found.scores})
        for found in integrated_gradients(model, texts, target=target, targets=targets, **options)
    ]


def _attention_attribution(model, texts, maps, target, targets=None, **options):
    return [
        ({"attribution": found.attention}, {})
        for found in attention_attribution(model, texts, target=target, targets=targets,
                                           **options)
    ]


register_method(
    ExplainMethod(
        name="relevance",
        summary="gradient-weighted attention relevance (Chefer et al.) of one output",
        compute=_relevance,
        takes_target=True,
        options=("score",),
        reads_texts=True,
    )
)
register_method(
    ExplainMethod(
        name="ig",
        summary="integrated gradients on the token embeddings of one output",
        compute=_integrated_gradients,
        takes_target=True,
        options=("baseline", "steps", "method", "batch_size", "score"),
        reads_texts=True,
    )
)
register_method(
    ExplainMethod(
        name="attribution",
        summary="attention attribution (integrated gradients over attention weights)",
        compute=_attention_attribution,
        takes_target=True,
        options=("steps", "method", "batch_size", "score"),
        reads_texts=True,
    )
)


def explain(model, texts, method="attention", target=None, **options):
    """Explains `model`'s processing of `texts` with one method.

    Args:
        model: a task (`Generator`, `Translator`, `Classifier`,
            `MaskedLanguageModel`).
        texts: a string, or a list of strings.
        method: a name from `METHODS` (`"attention"`, and the methods
            registered besides it).
        target: the output to explain, for methods that explain one
            (see `ExplainMethod.takes_target`).
        **options: `targets` and `max_new_tokens` choose the sequences as in
            `attention_maps` (a translator's target texts, a generator's
            continuation); any other option goes to the method.

    Returns:
        An `Explanation` for a string, a list of them for a list.

    Example:
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> good, bad = explain(model, ["good", "bad"], "ig", target=1, steps=8)
    >>> list(good.token_scores), good.target
    (['integrated gradients'], 1)
    >>> len(bad.token_scores["integrated gradients"]["tokens"])  # [CLS] b a d [SEP]
    5
    """
    single = isinstance(texts, str)
    texts = [texts] if single else texts
    method_name = check_choice("method", method, METHODS)
    entry = METHODS[method_name]
    unknown = sorted(set(options) - set(_INPUT_OPTIONS) - set(entry.options))
    if unknown:
        accepted = list(_INPUT_OPTIONS) + list(entry.options)
        raise ValueError(
            f"Method {method_name!r} takes the options {accepted}. Received: {unknown}"
        )
    if target is not None and not entry.takes_target:
        raise ValueError(
            f"Method {method_name!r} explains no particular output and takes no `target`. "
            f"Received: target={target!r}"
        )
    input_options = {name: options.pop(name) for name in _INPUT_OPTIONS if name in options}
    if isinstance(input_options.get("targets"), str):
        input_options["targets"] = [input_options["targets"]]
    if entry.reads_texts and input_options.get("max_new_tokens"):
        raise ValueError(
            f"Method {method_name!r} runs the model on the texts themselves: pass a "
            "continuation as `targets` instead of generating one with `max_new_tokens`. "
            f"Received: max_new_tokens={input_options['max_new_tokens']}"
        )
    maps = attention_maps(model, texts, **input_options)
    if entry.reads_texts:
        options["targets"] = input_options.get("targets")
    results = entry.compute(model, texts, maps, target, **options)
    if len(results) != len(maps):
        raise RuntimeError(
            f"explain method {method_name!r} returned {len(results)} results for "
            f"{len(maps)} texts"
        )
    explanations = [
        Explanation(method=method_name, maps=text_maps, views=dict(views),
                    token_scores=dict(scores), target=target)
        for text_maps, (views, scores) in zip(maps, results)
    ]
    return explanations[0] if single else explanations


def _default_kind(maps):
    # A translator's most telling picture is its alignment.
    return "cross" if "cross" in maps.kinds else maps.kinds[0]


def _index(name, value, size):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
        -size <= value < size
    ):
        raise ArgumentError.of(name, f"an integer in [0, {size})", value)
    return int(value)


def explanation_figure(explanation, kind=None, layer=None, head=None):
    """The figure that shows `explanation` best.

    - token scores (attributions): bars over the first score's tokens;
    - views (rollout, relevance): the first view's matrix for `kind`
      (`layer` / `head` pick one where it has those axes);
    - raw attention: one head's heatmap (`head=None`: the layer's mean) when a
      `layer` or `head` is given, else the layers x heads grid; for cross
      attention with a layer, the alignment of target and source tokens.

    `kind` defaults to `"cross"` where the model has it, else its one kind.

    Returns:
        A matplotlib `Figure`.

    Example:
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> figure = explanation_figure(explain(model, "hi", "rollout"))
    >>> len(figure.axes), figure.axes[0].get_title()  # the heatmap and its colour bar
    (2, 'rollout: rollout, encoder')
    """
    from keras_attn.interpret import plots

    maps = explanation.maps
    kind = _default_kind(maps) if kind is None else check_kind(maps, kind)
    if explanation.token_scores:
        name, by_sequence = next(iter(explanation.token_scores.items()))
        sequence = maps.sequences[kind][1] if maps.sequences[kind][1] in by_sequence else next(
            iter(by_sequence)
        )
        return plots.plot_token_scores(
            maps.tokens[sequence], by_sequence[sequence],
            title=f"{explanation.method}: {name} ({sequence})",
        )
    if explanation.views:
        name, by_kind = next(iter(explanation.views.items()))
        if kind not in by_kind:
            raise ValueError(
                f"View {name!r} has the kinds {list(by_kind)}. Received: kind={kind!r}"
            )
        matrix = np.asarray(by_kind[kind])
        if matrix.ndim >= 3:
            matrix = matrix[_index("layer", -1 if layer is None else layer, len(matrix))]
        if matrix.ndim == 3:
            matrix = matrix.mean(axis=0) if head is None else matrix[
                _index("head", head, len(matrix))
            ]
        return plots.plot_matrix(matrix, maps.query_tokens(kind), maps.key_tokens(kind),
                                 title=f"{explanation.method}: {name}, {kind}")
    if layer is None and head is None:
        return plots.plot_attention_grid(maps, kind)
    layer = check_layer(maps, kind, -1 if layer is None else layer)
    head = check_head(maps, kind, layer, head)
    if kind == "cross":
        return plots.plot_alignment(maps, layer=layer, head=head)
    return plots.plot_attention_head(maps, kind, layer, head)


def write_explanation(explanation, path, kind=None, layer=None, head=None, title=None):
    """Writes `explanation` as the HTML viewer (`.html`; `kind`, `layer`
    and `head` choose what it opens on) or as `explanation_figure`
    (`.png`, `.svg`). Atomic. Returns `path`.

    Example:
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> explanation = explain(model, "hi", "attention")
    >>> write_explanation(explanation, "head.svg", layer=0, head=1)
    'head.svg'
    >>> write_explanation(explanation, "hi.html", kind="encoder", layer=0)
    'hi.html'
    """
    from keras_attn.interpret import plots, viewer

    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in (".html", ".htm", *plots.FIGURE_FORMATS):
        raise ValueError(
            f"`path` must end in .html, .png or .svg. Received: path={os.fspath(path)!r}"
        )
    maps = explanation.maps
    if kind is not None:
        kind = check_kind(maps, kind)
    if suffix in (".html", ".htm"):
        selected = {}
        if kind is not None or layer is not None or head is not None:
            selected["kind"] = _default_kind(maps) if kind is None else kind
            selected["layer"] = check_layer(maps, selected["kind"], 0 if layer is None else layer)
            selected["head"] = check_head(maps, selected["kind"], selected["layer"], head)
        if title is not None:
            check_string("title", title)
        viewer.write_attention_viewer(
            path, maps, views=explanation.views, token_scores=explanation.token_scores,
            title=title or f"{explanation.method}", selected=selected or None,
        )
        return path
    plots.save_figure(explanation_figure(explanation, kind, layer, head), path)
    return path
