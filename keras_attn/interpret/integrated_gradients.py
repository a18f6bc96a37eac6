"""Integrated gradients (Sundararajan, Taly & Yan 2017) on token embeddings."""

import dataclasses

import numpy as np

from keras_attn.interpret.gradients import (
    QUADRATURES,
    SEQUENCE_INPUTS,
    embedding_gradients,
    quadrature,
)
from keras_attn.interpret.targets import select_outputs
from keras_attn.utils.arguments import check_choice, check_positive_int

BASELINES = ("pad", "zeros")


@dataclasses.dataclass
class Attributions:
    """Integrated-gradients attributions of one text for one output.

    Attributes:
        tokens: sequence name -> token strings (padding removed).
        scores: sequence name -> float32 `(tokens,)`, each token's
            attribution (summed over the hidden dimension); a translator has
            `"source"` and `"target"`.
        explained: the `ExplainedOutput`; `explained.score` is `f(x)`.
        baseline_score: `f(baseline)`.
        completeness_gap: `sum(attributions) - (f(x) - f(baseline))`, which
            is 0 for the exact integral.
        relative_gap: `|completeness_gap| / |f(x) - f(baseline)|`.

    Example:
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    >>> (result,) = integrated_gradients(generator, ["abc"], steps=8)
    >>> result.tokens["tokens"], result.scores["tokens"].shape
    (['[BOS]', 'a', 'b', 'c'], (4,))
    >>> gap = result.total - (result.explained.score - result.baseline_score)
    >>> bool(abs(gap - result.completeness_gap) < 1e-4)
    True
    """

    tokens: dict
    scores: dict
    explained: object
    baseline_score: float
    completeness_gap: float
    relative_gap: float

    @property
    def total(self):
        """The sum of all attributions."""
        return float(sum(values.sum() for values in self.scores.values()))


def embedding_inputs(model, batch):
    """`batch`'s backbone inputs with token embeddings instead of ids:
    `(embeddings name -> (batch, time, hidden), other inputs, sequence name ->
    embeddings name)`. The padding masks are explicit (embedding inputs
    would otherwise count every position as real)."""
    embeddings, others, names = {}, {}, {}
    given = dict(batch.inputs)
    for sequence, (ids_name, embeddings_name, mask_name, layer) in SEQUENCE_INPUTS.items():
        if ids_name not in given:
            continue
        ids = np.asarray(given.pop(ids_name))
        embeddings[embeddings_name] = np.asarray(getattr(model.backbone, layer)(ids), "float32")
        if mask_name not in given:
            others[mask_name] = ids != 0
        names[sequence] = embeddings_name
    others.update(given)
    return embeddings, others, names


def _baseline_embeddings(model, baseline, embeddings, others, names):
    result = {}
    for sequence, name in names.items():
        real = np.asarray(others[SEQUENCE_INPUTS[sequence][2]], bool)[:, :, None]
        value = embeddings[name]
        if isinstance(baseline, str):
            check_choice("baseline", baseline, BASELINES)
            if baseline == "pad":
                layer = getattr(model.backbone, SEQUENCE_INPUTS[sequence][3])
                pad = np.asarray(layer(np.zeros((1, 1), "int32")), "float32")[0, 0]
                chosen = np.broadcast_to(pad, value.shape)
            else:
                chosen = np.zeros_like(value)
        else:
            given = baseline.get(sequence) if isinstance(baseline, dict) else baseline
            if given is None:
                raise ValueError(
                    f"`baseline` as a dict needs an entry for every sequence {list(names)}. "
                    f"Received keys: {sorted(baseline)}"
                )
            given = np.asarray(given, "float32")
            try:
                chosen = np.broadcast_to(given, value.shape)
            except ValueError:
                raise ValueError(
                    f"`baseline` for {sequence!r} must broadcast to its token embeddings "
                    f"{value.shape} (batch, time, hidden). Received: shape {given.shape}"
                ) from None
        # Padding keeps its own embedding: only real tokens are attributed.
        result[name] = np.where(real, chosen, value).astype("float32")
    return result


def integrated_gradients(
    model, texts, target=None, targets=None, baseline="pad", steps=50,
    method="gauss_legendre", batch_size=32, score="logit",
):
    """Integrated gradients of one output with respect to the token embeddings.

    `attribution_i = (x_i - x'_i) · ∫₀¹ ∇_i f(x' + α (x - x')) dα`, summed over
    the hidden dimension of each token, where `x` are the token embeddings
    (positions and segments are added inside the backbone, so the baseline
    replaces tokens only) and `f` the explained score. By completeness the
    attributions sum to `f(x) - f(x')`; each result reports how far the
    quadrature is from it.

    Args:
        model: a `Generator`, `Classifier`, `MaskedLanguageModel` or
            `Translator` (attributed to source and target tokens).
        texts: a list of strings.
        target: the output explained (see `select_outputs`; default the
            prediction).
        targets: the task's second texts (see `Task.texts_to_inputs`).
        baseline: `"pad"` (every real token replaced by the padding token's
            embedding), `"zeros"` (zero vectors), or an array broadcastable to
            `(batch, time, hidden)` (a dict sequence name -> array for a
            translator). Padding positions are never changed.
        steps: quadrature nodes (trapezoid: intervals).
        method: `"gauss_legendre"` (default; converges much faster than
            Riemann sums on these smooth paths) or `"trapezoid"`.
        batch_size: interpolated inputs per backbone call.
        score: `"logit"` or `"log_prob"`.

    Returns:
        One `Attributions` per text.

    Example:
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    >>> (result,) = integrated_gradients(generator, ["abc"], steps=20)
    >>> result.scores["tokens"].shape, result.relative_gap < 0.01
    ((4,), True)
    """
    steps = check_positive_int("steps", steps)
    method = check_choice("method", method, QUADRATURES)
    batch_size = check_positive_int("batch_size", batch_size)
    batch = model.texts_to_inputs(texts, targets)
    rows = batch.batch_size
    selector = select_outputs(model, batch, target, score=score)
    embeddings, others, names = embedding_inputs(model, batch)
    baselines = _baseline_embeddings(model, baseline, embeddings, others, names)

    nodes, weights = quadrature(method, steps)
    # The two ends give f(x') and f(x) for the completeness check.
    alphas = np.concatenate([nodes, [0.0, 1.0]])
    integral = {name: np.zeros_like(value, dtype="float64") for name, value in embeddings.items()}
    values = np.zeros((len(alphas), rows))
    per_call = max(1, batch_size // rows)
    for start in range(0, len(alphas), per_call):
        chunk = alphas[start : start + per_call]
        path = {
            name: np.concatenate(
                [baselines[name] + alpha * (embeddings[name] - baselines[name]) for alpha in chunk]
            )
            for name in embeddings
        }
        repeated = {
            name: np.concatenate([np.asarray(value)] * len(chunk)) for name, value in others.items()
        }
        scores, gradients = embedding_gradients(model, repeated, selector, path)
        values[start : start + len(chunk)] = scores.reshape(len(chunk), rows)
        for offset in range(len(chunk)):
            index = start + offset
            if index >= len(nodes):
                continue
            for name, gradient in gradients.items():
                integral[name] += weights[index] * gradient[offset * rows : (offset + 1) * rows]
    baseline_scores, input_scores = values[-2], values[-1]

    results = []
    for row in range(rows):
        tokens = {sequence: batch.tokens[sequence][row] for sequence in names}
        scores = {}
        for sequence, name in names.items():
            attribution = (embeddings[name][row] - baselines[name][row]) * integral[name][row]
            scores[sequence] = attribution.sum(-1)[: len(tokens[sequence])].astype("float32")
        difference = float(input_scores[row] - baseline_scores[row])
        gap = float(sum(s.astype("float64").sum() for s in scores.values()) - difference)
        results.append(
            Attributions(
                tokens=tokens,
                scores=scores,
                explained=selector.explained[row],
                baseline_score=float(baseline_scores[row]),
                completeness_gap=gap,
                relative_gap=abs(gap) / max(abs(difference), 1e-12),
            )
        )
    return results
