"""Head importance (Michel et al. 2019): how much the task's loss depends on
each attention head, as the expected gradient of the loss with respect to a
mask multiplying the head's output."""

import dataclasses
import weakref

import keras
import numpy as np

# The gradient of the loss with respect to the head masks needs a tape; the
# models run on the TensorFlow backend.
import tensorflow as tf

from keras_attn.utils.arguments import check_boolean, check_positive_int


@dataclasses.dataclass
class HeadImportance:
    """Importance of every attention head of a model.

    Attributes:
        scores: attention kind (`"encoder"`, `"decoder"`, `"cross"`) ->
            float64 `(layers, max_heads)`: the mean over batches of
            `|dL/d xi_h|`, divided by its L2 norm over each layer's heads
            when `normalized`. A layer with fewer heads than the widest has
            `NaN` in the heads it lacks.
        head_counts: attention kind -> heads of each layer.
        normalized: whether each layer's scores have unit L2 norm.
        num_batches: how many batches were averaged.

    Example:
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=2)
    >>> data = model.make_dataset(["a good film", "a bad film"], [1, 0],
    ...                           batch_size=2, shuffle=False)
    >>> importance = head_importance(model, data)
    >>> importance.scores["encoder"].shape, importance.head_counts["encoder"]
    ((2, 4), [4, 4])
    >>> bool(np.allclose(np.linalg.norm(importance.scores["encoder"], axis=1), 1.0))
    True
    >>> kind, layer, head, score = importance.ranked()[0]  # the least important head
    """

    scores: dict
    head_counts: dict
    normalized: bool
    num_batches: int

    @property
    def kinds(self):
        return tuple(self.scores)

    def ranked(self):
        """Every head as `(kind, layer, head, score)`, least important
        first (ties in kind, layer, head order)."""
        heads = [
            (kind, layer, head, float(self.scores[kind][layer, head]))
            for kind, counts in self.head_counts.items()
            for layer, count in enumerate(counts)
            for head in range(count)
        ]
        return sorted(heads, key=lambda item: item[3])


def head_mask_loss_and_gradients(model, batch, head_masks=None):
    """The task's loss on one batch and its gradient with respect to every
    attention kind's head mask.

    Args:
        model: a task (`Generator`, `Classifier`, `MaskedLanguageModel`,
            `Translator`).
        batch: `(x, y)` or `(x, y, sample_weight)`, as the task's
            `make_dataset` yields.
        head_masks: attention kind -> float `(layers, max_heads)`; default
            all ones (every head kept).

    Returns:
        `(loss, gradients)`: a float and, per kind, float64 numpy
        `(layers, max_heads)`; entries past a layer's head count are 0.

    The loss is `model.compute_loss` when the model is compiled with a
    loss, otherwise its `default_loss()`; the model runs in inference mode
    (no dropout).

    Example:
    >>> from keras_attn.models import Generator
    >>> model = Generator.from_preset("tiny", sequence_length=16, num_layers=2)
    >>> batch = next(iter(model.make_dataset(["abcdef"], batch_size=1)))
    >>> loss, gradients = head_mask_loss_and_gradients(model, batch)
    >>> gradients["decoder"].shape  # (layers, heads)
    (2, 4)
    >>> without_head_0, _ = head_mask_loss_and_gradients(
    ...     model, batch, {"decoder": [[0, 1, 1, 1], [1, 1, 1, 1]]})
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(tuple(batch))
    masks = _checked_masks(model, head_masks)
    loss, gradients = _loss_and_gradients(model, masks, x, y, sample_weight)
    return float(loss), {kind: np.asarray(g, "float64") for kind, g in gradients.items()}


def head_importance(model, data_or_dataset, num_batches=None, normalize=True, batch_size=32):
    """Michel et al.'s (2019) importance of every attention head.

    The importance of head `h` is `E |dL/d xi_h|`, the expected absolute
    gradient of the task's training loss `L` with respect to a mask `xi`
    multiplying the head's output, taken at `xi = 1` (the model as it is).
    As in the authors' code, the expectation runs over batches (the loss of
    a batch is its mean over examples or tokens); `batch_size=1` gives the
    per-example expectation of the paper's formula. With `normalize`, each
    layer's scores are divided by their L2 norm (the paper's per-layer
    normalisation), which makes heads of different layers comparable for
    global pruning.

    Args:
        model: a task (`Generator`, `Classifier`, `MaskedLanguageModel`,
            `Translator`).
        data_or_dataset: examples from `keras_attn.data` (read through
            `model.dataset_from_data`, not shuffled), or a `tf.data.Dataset`
            of `(x, y)` or `(x, y, sample_weight)` batches, as the task's
            `make_dataset` builds.
        num_batches: average over at most this many batches (default: all).
        normalize: divide each layer's scores by their L2 norm.
        batch_size: batch size for loaded examples.

    Returns:
        A `HeadImportance`; every kind of `model.attention_kinds` is scored.

    Cost: one forward and backward pass per batch, with the masks as the
    only gradient targets.

    Example:
    >>> from keras_attn.data import TranslationData
    >>> from keras_attn.models import Translator
    >>> model = Translator.from_preset("tiny", source_length=16, target_length=8,
    ...     num_encoder_layers=1, num_decoder_layers=1)
    >>> data = TranslationData(["one two", "three"], ["12", "3"])
    >>> importance = head_importance(model, data)
    >>> importance.kinds, importance.scores["cross"].shape
    (('encoder', 'decoder', 'cross'), (1, 4))
    """
    num_batches = check_positive_int("num_batches", num_batches, allow_none=True)
    normalize = check_boolean("normalize", normalize)
    dataset = _as_dataset(model, data_or_dataset, batch_size)
    masks = _checked_masks(model, None)
    totals = {kind: np.zeros(mask.shape, "float64") for kind, mask in masks.items()}
    step = _compiled_step(model)
    seen = 0
    for batch in dataset:
        if num_batches is not None and seen >= num_batches:
            break
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        _, gradients = step(masks, x, y, sample_weight)
        for kind, gradient in gradients.items():
            totals[kind] += np.abs(np.asarray(gradient, "float64"))
        seen += 1
    if not seen:
        raise ValueError("`data_or_dataset` must hold at least one batch. Received: no batches")
    head_counts = model_head_counts(model)
    scores = {}
    for kind, total in totals.items():
        score = total / seen
        if normalize:
            norms = np.sqrt(np.sum(score**2, axis=1, keepdims=True))
            # A layer whose gradients all vanish keeps its zeros.
            score = score / np.where(norms > 0, norms, 1.0)
        for layer, count in enumerate(head_counts[kind]):
            score[layer, count:] = np.nan
        scores[kind] = score
    return HeadImportance(scores, head_counts, normalize, seen)


def model_head_counts(model):
    """Attention kind -> heads of each layer of `model`'s backbone."""
    return {
        name: [int(count) for count in getattr(model.backbone, kind.head_counts)]
        for name, kind in model.attention_kinds.items()
    }


def _checked_masks(model, head_masks):
    counts = model_head_counts(model)
    if head_masks is None:
        head_masks = {}
    unknown = sorted(set(head_masks) - set(counts))
    if unknown:
        raise ValueError(
            f"`head_masks` keys must be attention kinds of this {model.task_name}, among "
            f"{list(counts)}. Received: {unknown}"
        )
    masks = {}
    for kind, layer_counts in counts.items():
        shape = (len(layer_counts), max(layer_counts))
        mask = np.asarray(head_masks.get(kind, np.ones(shape)), "float32")
        if mask.shape != shape:
            raise ValueError(
                f"`head_masks[{kind!r}]` must have shape (layers, max_heads) = {shape}. "
                f"Received: shape {mask.shape}"
            )
        masks[kind] = tf.constant(mask)
    return masks


# model -> (its loss when traced, the traced step): later calls on batches of
# the same shapes reuse the graph instead of tracing it again.
_STEPS = weakref.WeakKeyDictionary()


def _compiled_step(model):
    loss = getattr(model, "loss", None) if getattr(model, "compiled", False) else None
    cached = _STEPS.get(model)
    if cached is None or cached[0] is not loss:
        # A weak reference: the cached step must not keep its model alive.
        model_ref = weakref.ref(model)
        step = tf.function(
            lambda masks, x, y, w: _loss_and_gradients(model_ref(), masks, x, y, w),
            reduce_retracing=True,
        )
        cached = _STEPS[model] = (loss, step)
    return cached[1]


def _loss_and_gradients(model, masks, x, y, sample_weight):
    kinds = model.attention_kinds
    with tf.GradientTape() as tape:
        tape.watch(list(masks.values()))
        arguments = {kinds[kind].head_mask_argument: mask for kind, mask in masks.items()}
        outputs = model.backbone(x, training=False, **arguments)
        logits = model.logits_from_backbone(outputs, x, training=False)
        loss = task_loss(model, x, y, logits, sample_weight)
    gradients = tape.gradient(loss, masks)
    return loss, gradients


def task_loss(model, x, y, logits, sample_weight):
    """The model's training loss: its compiled loss when it has one, else
    its `default_loss()`."""
    if getattr(model, "compiled", False) and getattr(model, "loss", None) is not None:
        return model.compute_loss(x=x, y=y, y_pred=logits, sample_weight=sample_weight,
                                  training=False)
    return model.default_loss()(y, logits, sample_weight=sample_weight)


def _as_dataset(model, data_or_dataset, batch_size):
    if isinstance(data_or_dataset, tf.data.Dataset):
        return data_or_dataset
    if not hasattr(data_or_dataset, "__len__") or isinstance(data_or_dataset, (str, dict)):
        raise ValueError(
            "`data_or_dataset` must be examples from keras_attn.data (e.g. load_dataset(...)) "
            "or a tf.data.Dataset of (x, y) or (x, y, sample_weight) batches. Received: "
            f"{type(data_or_dataset).__name__}"
        )
    batch_size = check_positive_int("batch_size", batch_size)
    return model.dataset_from_data(data_or_dataset, batch_size=batch_size, shuffle=False)
