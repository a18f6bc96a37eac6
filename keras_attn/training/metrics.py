"""Metrics for sequence models: masked token accuracy, perplexity and BLEU."""

import keras
import numpy as np
import sacrebleu
from keras import ops

from keras_attn.training.losses import (
    _labels,
    check_ignore_index,
    token_cross_entropy,
    token_weights,
)
from keras_attn.utils.arguments import check_choice


@keras.saving.register_keras_serializable(package="keras_attn")
class MaskedAccuracy(keras.metrics.Metric):
    """Fraction of real (non-padding) target tokens predicted by the argmax.

    Correct and total token counts accumulate over batches, so the result is
    token-weighted: a batch with many real tokens counts more than a mostly
    padded one.

    Args:
        ignore_index: target id that marks padding, or `None` to count every
            position. A Keras mask on `y_pred` is also honoured.
        name, dtype: standard metric arguments.

    Call arguments (`update_state`):
        y_true: `(batch, time)` integer targets (or `(batch, time, 1)`).
        y_pred: `(batch, time, vocab_size)` logits or probabilities.
        sample_weight: optional `(batch,)` or `(batch, time)` weights.

    Example:
    >>> metric = MaskedAccuracy()
    >>> metric.update_state([[1, 2, 0]], [[[0.0, 9, 0], [0, 9, 0], [9, 0, 0]]])
    >>> float(metric.result())  # one of the two real tokens is right
    0.5
    """

    def __init__(self, ignore_index=0, name="masked_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.ignore_index = check_ignore_index(ignore_index)
        # Read by ModelCheckpoint / EarlyStopping in mode="auto".
        self._direction = "up"
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        weights, _ = token_weights(y_true, y_pred, self.ignore_index, sample_weight)
        predictions = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        matches = ops.cast(ops.equal(predictions, _labels(y_true, y_pred)), "float32")
        self.correct.assign_add(ops.cast(ops.sum(matches * weights), self.dtype))
        self.count.assign_add(ops.cast(ops.sum(weights), self.dtype))

    def result(self):
        return ops.divide_no_nan(self.correct, self.count)

    def get_config(self):
        config = super().get_config()
        config["ignore_index"] = self.ignore_index
        return config


@keras.saving.register_keras_serializable(package="keras_attn")
class Perplexity(keras.metrics.Metric):
    """`exp` of the mean cross-entropy per real (non-padding) target token.

    The summed cross-entropy and the token count accumulate over batches and
    the exponential is taken at the end: the result is the corpus perplexity,
    not a mean of per-batch perplexities. No label smoothing is applied. With
    no real token seen yet the result is 1.

    Args:
        from_logits: whether `y_pred` holds logits rather than probabilities.
        ignore_index: target id that marks padding, or `None` to count every
            position. A Keras mask on `y_pred` is also honoured.
        name, dtype: standard metric arguments.

    Call arguments (`update_state`):
        y_true: `(batch, time)` integer targets (or `(batch, time, 1)`).
        y_pred: `(batch, time, vocab_size)` logits or probabilities, any
            float dtype (the cross-entropy is computed in float32).
        sample_weight: optional `(batch,)` or `(batch, time)` weights.

    Example:
    >>> metric = Perplexity()
    >>> metric.update_state([[3, 1, 0]], keras.ops.zeros((1, 3, 10)))
    >>> round(float(metric.result()), 4)  # uniform over 10 tokens
    10.0
    """

    def __init__(self, from_logits=True, ignore_index=0, name="perplexity", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.ignore_index = check_ignore_index(ignore_index)
        self._direction = "down"
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        weights, real = token_weights(y_true, y_pred, self.ignore_index, sample_weight)
        losses = token_cross_entropy(
            y_true, y_pred, from_logits=self.from_logits, ignore_index=self.ignore_index
        )
        losses = ops.where(real > 0, losses * weights, 0.0)
        self.total.assign_add(ops.cast(ops.sum(losses), self.dtype))
        self.count.assign_add(ops.cast(ops.sum(weights), self.dtype))

    def result(self):
        return ops.exp(ops.divide_no_nan(self.total, self.count))

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits, "ignore_index": self.ignore_index})
        return config


def _as_strings(name, texts):
    if isinstance(texts, (str, bytes)):
        raise ValueError(
            f"`{name}` must be a list of strings (one per sentence), not a single string. "
            f"Received: {name}={texts!r}"
        )
    if isinstance(texts, np.ndarray) or keras.ops.is_tensor(texts):
        texts = ops.convert_to_numpy(texts).reshape(-1).tolist()
    strings = []
    for index, text in enumerate(texts):
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise ValueError(
                f"`{name}` must contain only strings. Received: {name}[{index}]={text!r}"
            )
        strings.append(text)
    return strings


def corpus_bleu(hypotheses, references, tokenize="13a"):
    """Corpus-level BLEU (0-100) of detokenized text, computed by sacreBLEU.

    Scores are comparable with published WMT results when the text is
    detokenized and `tokenize` is sacreBLEU's default `"13a"`.

    Args:
        hypotheses: list of system outputs, strings (or UTF-8 bytes, e.g.
            from a decoded tensor).
        references: list of reference translations, one per hypothesis.
        tokenize: a sacreBLEU tokenizer name (`"13a"`, `"intl"`, `"char"`,
            `"zh"`, `"none"`, ...).

    Returns:
        Python float.

    Example:
    >>> round(corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 2)
    100.0
    """
    hypotheses = _as_strings("hypotheses", hypotheses)
    references = _as_strings("references", references)
    if len(hypotheses) != len(references):
        raise ValueError(
            "`hypotheses` and `references` must have the same length (one reference per "
            f"hypothesis). Received: len(hypotheses)={len(hypotheses)}, "
            f"len(references)={len(references)}"
        )
    if not hypotheses:
        raise ValueError("`hypotheses` must hold at least one sentence. Received: hypotheses=[]")
    check_choice("tokenize", tokenize, tuple(sacrebleu.BLEU.TOKENIZERS))
    return float(sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score)
