"""Token-level losses for sequence models (translation, language modelling)."""

import numbers

import keras
from keras import ops

from keras_attn.utils.arguments import check_choice, check_rate
from keras_attn.utils.keras_compat import keras_mask_of, scale_loss_for_distribution

REDUCTIONS = ("sum_over_batch_size", "sum", "none", None)

# Probabilities (from_logits=False) are clipped to [EPSILON, 1] before the log,
# as Keras' own cross-entropies do, so that a zero probability gives a large
# finite loss instead of inf.
EPSILON = 1e-7


def check_ignore_index(value):
    """Raises unless `value` is an integer or `None`."""
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(
            f"`ignore_index` must be an integer or None. Received: ignore_index={value!r}"
        )
    return int(value)


def _labels(y_true, y_pred):
    labels = ops.cast(y_true, "int32")
    # Accept (batch, time, 1) labels next to (batch, time, vocab) predictions.
    if len(labels.shape) == len(ops.convert_to_tensor(y_pred).shape):
        labels = ops.squeeze(labels, axis=-1)
    return labels


def token_cross_entropy(y_true, y_pred, from_logits=True, label_smoothing=0.0, ignore_index=None):
    """Per-token sparse categorical cross-entropy, computed in float32.

    With label smoothing `eps` the target distribution is
    `(1 - eps) * one_hot(y_true) + eps / vocab_size` (Szegedy et al. 2016,
    "Rethinking the Inception Architecture"), as used by Vaswani et al. 2017.

    Args:
        y_true: integer labels, `(batch, ...)` or `(batch, ..., 1)`.
        y_pred: `(batch, ..., vocab_size)` logits or probabilities, any float
            dtype; cast to float32 before the softmax.
        from_logits: whether `y_pred` holds logits rather than probabilities.
        label_smoothing: `eps` in `[0, 1)`.
        ignore_index: label whose positions get a loss of 0 (their
            predictions, even non-finite ones, are never read); `None` for none.

    Returns:
        `(batch, ...)` float32 losses.

    Example:
    >>> logits = keras.random.normal((2, 5, 11))
    >>> labels = keras.random.randint((2, 5), 0, 11)
    >>> tuple(token_cross_entropy(labels, logits, label_smoothing=0.1).shape)
    (2, 5)
    >>> uniform = ops.zeros((1, 1, 4))  # 4 tokens, all equally likely
    >>> round(float(token_cross_entropy([[3]], uniform)[0, 0]), 4)  # log(4)
    1.3863
    """
    labels = _labels(y_true, y_pred)
    y_pred = ops.cast(y_pred, "float32")
    keep = None
    if ignore_index is not None:
        keep = ops.not_equal(labels, ignore_index)
        # Ignored positions may hold an id outside the vocabulary (e.g. -100).
        labels = ops.where(keep, labels, 0)
    if from_logits:
        # The fused op (TensorFlow's SparseSoftmaxCrossEntropyWithLogits): its
        # gradient is softmax - one_hot, where picking the label's log-prob
        # with take_along_axis scatters back through a (batch, T, vocab)
        # segment sum, measured at 17% of a GPT training step
        # (benchmarks/profile_ops.py).
        nll = ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        if label_smoothing:
            # -mean(log_softmax(x)) = logsumexp(x) - mean(x)
            smooth = ops.logsumexp(y_pred, axis=-1) - ops.mean(y_pred, axis=-1)
    else:
        log_probs = ops.log(ops.clip(y_pred, EPSILON, 1.0))
        nll = -ops.squeeze(ops.take_along_axis(log_probs, labels[..., None], axis=-1), axis=-1)
        if label_smoothing:
            smooth = -ops.mean(log_probs, axis=-1)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    if keep is not None:
        # `where`, not a product: a non-finite prediction at a padded position
        # would turn `inf * 0` into NaN.
        nll = ops.where(keep, nll, 0.0)
    return nll


def token_weights(y_true, y_pred, ignore_index=None, sample_weight=None):
    """Float32 weights of each token: 0 on padding, `sample_weight` elsewhere.

    Padding is every position whose label equals `ignore_index`, plus every
    position a Keras mask on `y_pred` (e.g. from `Embedding(mask_zero=True)`)
    marks as False.

    Args:
        y_true: integer labels, `(batch, ...)` or `(batch, ..., 1)`.
        y_pred: `(batch, ..., vocab_size)` predictions (read for their mask).
        ignore_index: padding label, or `None`.
        sample_weight: optional `(batch,)` per-sequence or `(batch, ...)`
            per-token weights.

    Returns:
        A tuple `(weights, real)` of `(batch, ...)` float32 tensors: the
        per-token weights, and 1 for real tokens / 0 for padding.

    Example:
    >>> y_true = np.array([[5, 7, 0], [4, 0, 0]])  # 0 pads
    >>> y_pred = np.zeros((2, 3, 10), "float32")
    >>> weights, real = token_weights(y_true, y_pred, ignore_index=0,
    ...                               sample_weight=np.array([2.0, 1.0]))
    >>> ops.convert_to_numpy(weights).tolist()
    [[2.0, 2.0, 0.0], [1.0, 0.0, 0.0]]
    >>> ops.convert_to_numpy(real).tolist()
    [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    labels = _labels(y_true, y_pred)
    real = ops.ones_like(labels, dtype="bool")
    if ignore_index is not None:
        real = ops.not_equal(labels, ignore_index)
    mask = keras_mask_of(y_pred)
    if mask is not None:
        real = ops.logical_and(real, ops.cast(mask, "bool"))
    real = ops.cast(real, "float32")
    if sample_weight is None:
        return real, real
    weight = ops.cast(sample_weight, "float32")
    rank = len(real.shape)
    while len(weight.shape) > rank and weight.shape[-1] == 1:
        weight = ops.squeeze(weight, axis=-1)
    while len(weight.shape) < rank:
        weight = ops.expand_dims(weight, axis=-1)
    return real * weight, real


@keras.saving.register_keras_serializable(package="keras_attn")
class MaskedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Token cross-entropy averaged over real (non-padding) targets.

    A sequence batch is mostly padding when lengths vary; averaging over all
    positions would shrink the loss (and its gradient) by the padding ratio,
    and make it depend on how much padding a batch happens to carry. Here the
    loss is the sum of token losses divided by the number of targets that
    differ from `ignore_index`. A batch with no real target gives 0.

    The computation runs in float32 whatever the dtype of `y_pred`, so a model
    under a `mixed_float16` / `mixed_bfloat16` policy can feed its logits
    directly. Works inside `jit_compile=True` training steps.

    Args:
        from_logits: whether `y_pred` holds logits rather than probabilities.
        label_smoothing: `eps` in `[0, 1)`; the target distribution becomes
            `(1 - eps) * one_hot + eps / vocab_size`.
        ignore_index: target id that marks padding, or `None` to count every
            position. A Keras mask on `y_pred` is also honoured.
        reduction: `"sum_over_batch_size"` (mean over real tokens),
            `"sum"`, or `"none"` / `None` (per-token losses, 0 on padding).
        name: name of the loss.

    Call arguments:
        y_true: `(batch, time)` integer targets (or `(batch, time, 1)`).
        y_pred: `(batch, time, vocab_size)` logits or probabilities.
        sample_weight: optional `(batch,)` or `(batch, time)` weights; they
            scale token losses, while the mean still divides by the number of
            real tokens (the Keras convention for masked losses).

    Returns:
        Scalar float32 loss, or `(batch, time)` with `reduction="none"`.

    Example:
    >>> loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    >>> targets = np.array([[5, 3, 0, 0], [2, 0, 0, 0]])  # 0 is padding
    >>> logits = np.zeros((2, 4, 8), "float32")
    >>> round(float(loss(targets, logits)), 4)  # log(8): 3 real tokens only
    2.0794
    """

    def __init__(
        self,
        from_logits=True,
        label_smoothing=0.0,
        ignore_index=0,
        reduction="sum_over_batch_size",
        name="masked_sparse_categorical_crossentropy",
    ):
        reduction = check_choice("reduction", reduction, REDUCTIONS)
        super().__init__(name=name, reduction=reduction, dtype="float32")
        self.from_logits = bool(from_logits)
        self.label_smoothing = check_rate("label_smoothing", label_smoothing)
        self.ignore_index = check_ignore_index(ignore_index)

    def call(self, y_true, y_pred):
        """Per-token losses, 0 where `y_true == ignore_index`."""
        return token_cross_entropy(
            y_true, y_pred, self.from_logits, self.label_smoothing, self.ignore_index
        )

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Replaces Loss.__call__, whose mean divides by every position,
        # padding included, and whose product with the mask lets a non-finite
        # prediction at a padded position through as NaN.
        weights, real = token_weights(y_true, y_pred, self.ignore_index, sample_weight)
        with keras.name_scope(self.name):
            losses = self.call(y_true, y_pred)
            losses = ops.where(real > 0, losses * weights, 0.0)
            if self.reduction in ("none", None):
                return losses
            total = ops.sum(losses)
            if self.reduction == "sum":
                return total
            mean = ops.divide_no_nan(total, ops.sum(real))
            # Each replica sees part of the batch and tf.distribute sums their
            # gradients: scale as Keras' own Loss.__call__ does.
            return scale_loss_for_distribution(mean)

    def get_config(self):
        return {
            "name": self.name,
            "reduction": self.reduction,
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "ignore_index": self.ignore_index,
        }
