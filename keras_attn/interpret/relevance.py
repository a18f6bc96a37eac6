"""Gradient-weighted relevance (Chefer, Gur & Wolf 2021, "Generic
Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
Transformers") for encoders, causal decoders and encoder-decoders."""

import dataclasses

import numpy as np

from keras_attn.interpret.gradients import multiplier_gradients, multiplier_shapes
from keras_attn.interpret.targets import select_outputs


@dataclasses.dataclass
class Relevance:
    """The relevance maps of one text for one explained output.

    Attributes:
        tokens: sequence name -> token strings (padding removed).
        relevance: kind -> float32 `(queries, keys)` relevance matrix:
            `"encoder"` (encoder self-relevance `R^ss`), `"decoder"`
            (decoder self-relevance `R^tt`, causal), and for an
            encoder-decoder `"cross"` (`R^ts`: row `i`, how relevant each
            source token is to target position `i`). Self-relevance starts
            as the identity, so the diagonal holds at least 1.
        sequences: kind -> `(query sequence, key sequence)` names.
        token_scores: sequence name -> float32 `(tokens,)`: the row of the
            relevance at the explained position (a `[CLS]`-pooled
            classifier: the `[CLS]` row; a mean-pooled one: the mean of the
            rows); for a translator the `"cross"` row gives the source
            tokens' scores and the `"decoder"` row the target tokens'.
        explained: the `ExplainedOutput` (position, token, score).

    Example:
    >>> from keras_attn.models import Classifier
    >>> classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> (result,) = relevance(classifier, ["good"], target=1)
    >>> result.tokens["tokens"], result.relevance["encoder"].shape
    (['[CLS]', 'g', 'o', 'o', 'd', '[SEP]'], (6, 6))
    >>> result.token_scores["tokens"].shape, result.explained.token
    ((6,), 1)
    """

    tokens: dict
    relevance: dict
    sequences: dict
    token_scores: dict
    explained: object


def head_averaged(weighted, head_counts=None):
    """`Ā = mean_h (∇A ⊙ A)^+` per layer: `(layers, heads, q, k)` ->
    `(layers, q, k)`, averaging each layer over its own `head_counts[l]`
    heads (the others are padding)."""
    weighted = np.maximum(np.asarray(weighted, "float64"), 0.0)
    heads = weighted.shape[1]
    counts = [heads] * weighted.shape[0] if head_counts is None else list(head_counts)
    return np.stack([layer[:count].mean(0) for layer, count in zip(weighted, counts)])


def _normalized_self_relevance(relevance):
    """Chefer et al. eq. 10-12: `R̂ = R - I`, rows of `R̂` scaled to sum to
    one (rows without relevance stay zero), plus `I`."""
    identity = np.eye(relevance.shape[0])
    residual = relevance - identity
    sums = residual.sum(-1, keepdims=True)
    scaled = np.divide(residual, sums, out=np.zeros_like(residual), where=sums > 0)
    return scaled + identity


def propagate_relevance(weighted, head_counts=None):
    """Chefer et al.'s relevance update rules, from each layer's `∇A ⊙ A`.

    Self-attention over `x` (encoder, or causal decoder): `R^xx += Ā·R^xx`
    and `R^xy += Ā·R^xy` (eq. 6-7). Cross-attention of the target `t` over
    the source `s` (decoder layer after its self-attention): `R^ts +=
    (R̄^tt)ᵀ·Ā·R̄^ss` with the normalized self-relevances `R̄` (eq. 10-12),
    and `R^tt += Ā·R^st`, which is zero here (the source never attends to the
    target). `R^ss`, `R^tt` start as identities, `R^ts` as zeros; the encoder
    runs first, then each decoder layer's self- and cross-attention.

    Args:
        weighted: kind (`"encoder"`, `"decoder"`, `"cross"`) -> float
            `(layers, heads, queries, keys)`: each layer's gradient of the
            explained output with respect to the attention weights times
            the weights (what the gradient with respect to an attention
            multiplier of ones is).
        head_counts: kind -> heads per layer (default: all heads real).

    Returns:
        kind -> float32 relevance `(queries, keys)`.

    Example: with gradients of one (so `∇A ⊙ A = A`) one layer gives
    `I + A`:
    >>> attention = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])  # (1 layer, 1 head, 2, 2)
    >>> propagate_relevance({"encoder": attention})["encoder"].tolist()
    [[2.0, 0.0], [0.5, 1.5]]
    """
    head_counts = head_counts or {}
    averaged = {
        kind: head_averaged(value, head_counts.get(kind)) for kind, value in weighted.items()
    }
    unknown = sorted(set(averaged) - {"encoder", "decoder", "cross"})
    if unknown:
        raise ValueError(
            f"`weighted` keys must be among 'encoder', 'decoder', 'cross'. Received: {unknown}"
        )
    results = {}
    source_relevance = None
    if "encoder" in averaged:
        source_length = averaged["encoder"].shape[-1]
        source_relevance = np.eye(source_length)
        for layer in averaged["encoder"]:
            source_relevance = source_relevance + layer @ source_relevance
        results["encoder"] = source_relevance
    if "cross" in averaged and "decoder" not in averaged:
        raise ValueError("Cross-attention relevance needs the decoder's ('decoder') too")
    if "decoder" in averaged:
        target_length = averaged["decoder"].shape[-1]
        target_relevance = np.eye(target_length)
        cross = averaged.get("cross")
        if cross is not None:
            if source_relevance is None:
                source_relevance = np.eye(cross.shape[-1])
            cross_relevance = np.zeros((target_length, cross.shape[-1]))
            normalized_source = _normalized_self_relevance(source_relevance)
        for index, layer in enumerate(averaged["decoder"]):
            target_relevance = target_relevance + layer @ target_relevance
            if cross is not None:
                cross_relevance = cross_relevance + layer @ cross_relevance
                normalized_target = _normalized_self_relevance(target_relevance)
                cross_relevance = cross_relevance + (
                    normalized_target.T @ cross[index] @ normalized_source
                )
        results["decoder"] = target_relevance
        if cross is not None:
            results["cross"] = cross_relevance
    return {kind: value.astype("float32") for kind, value in results.items()}


def relevance(model, texts, target=None, targets=None, score="logit"):
    """Gradient-weighted relevance of each text's tokens for one output.

    The gradient of the explained score with respect to every attention
    weight comes from one backward pass through the backbone called with
    attention multipliers of ones (their gradient is `A ⊙ ∇A`); the
    update rules are `propagate_relevance`.

    Args:
        model: a `Generator`, `Classifier`, `MaskedLanguageModel` or
            `Translator`.
        texts: a list of strings.
        target: the output explained (see `keras_attn.interpret.Target`):
            default, the predicted class, the predicted next token at the
            last real position (generator), at the first `[MASK]` (masked
            LM) or at the last real target position (translator).
        targets: the task's second texts (see `Task.texts_to_inputs`).
        score: `"logit"` or `"log_prob"` of the explained class or token.

    Returns:
        One `Relevance` per text.

    Example:
    >>> from keras_attn.models import Translator
    >>> translator = Translator.from_preset("tiny", source_length=16,
    ...     target_length=8, num_encoder_layers=1, num_decoder_layers=1)
    >>> (result,) = relevance(translator, ["ab"], targets=["xy"])
    >>> result.relevance["cross"].shape, result.token_scores["source"].shape
    ((3, 3), (3,))
    >>> result.explained.position  # the last target position, after "y"
    2
    """
    batch = model.texts_to_inputs(texts, targets)
    selector = select_outputs(model, batch, target, score=score)
    multipliers = {
        name: np.ones(shape, "float32") for name, shape in multiplier_shapes(model, batch).items()
    }
    _, gradients, attention = multiplier_gradients(model, batch.inputs, selector, multipliers)
    kinds = model.attention_kinds
    head_counts = {
        name: list(getattr(model.backbone, kind.head_counts)) for name, kind in kinds.items()
    }
    results = []
    for row in range(batch.batch_size):
        tokens = {name: rows[row] for name, rows in batch.tokens.items()}
        weighted = {}
        for name, kind in kinds.items():
            queries, keys = len(tokens[kind.queries]), len(tokens[kind.keys])
            weighted[name] = gradients[name][:, row, :, :queries, :keys]
        matrices = propagate_relevance(weighted, head_counts)
        explained = selector.explained[row]
        results.append(
            Relevance(
                tokens=tokens,
                relevance=matrices,
                sequences={name: (kind.queries, kind.keys) for name, kind in kinds.items()},
                token_scores=_token_scores(model, kinds, matrices, explained),
                explained=explained,
            )
        )
    return results


def _token_scores(model, kinds, matrices, explained):
    scores = {}
    for name, kind in kinds.items():
        matrix = matrices[name]
        if explained.position is not None:
            if kind.queries != explained.sequence:
                continue
            row = matrix[explained.position]
        elif getattr(model, "pooling", "cls") == "cls":
            row = matrix[0]
        else:
            row = matrix.mean(0)
        # A translator's source scores come from the cross relevance.
        if kind.keys not in scores or name == "cross":
            scores[kind.keys] = row
    return scores
