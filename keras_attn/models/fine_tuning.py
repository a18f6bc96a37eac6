"""Fine-tuning a trained model: freeze parts of it, train low-rank adapters
(LoRA) on its projections, and merge the adapters back before export."""

import os
import tempfile

from keras_attn.models.task import Task
from keras_attn.utils.arguments import check_choice, check_positive_int

LORA_TARGETS = ("attention", "feed_forward")


def backbone_blocks(model):
    """The Transformer blocks of a task's backbone, in order (encoder first)."""
    backbone = model.backbone
    if hasattr(backbone, "blocks"):
        return list(backbone.blocks)
    return list(backbone.encoder_blocks) + list(backbone.decoder_blocks)


def embedding_layers(model):
    """The token / position / segment embedding layers of a task's backbone."""
    backbone = model.backbone
    candidates = [
        getattr(backbone, name, None)
        for name in ("embedding", "segment_embedding", "source_embedding", "target_embedding")
    ]
    unique = []
    for layer in candidates:
        if layer is not None and all(layer is not seen for seen in unique):
            unique.append(layer)
    return unique


def freeze(model, backbone=False, embeddings=False, blocks=()):
    """Stops training of the chosen parts of `model` (`trainable = False`).

    Args:
        model: a `keras_attn.models` task.
        backbone: freeze the whole backbone (only the task head trains).
        embeddings: freeze the embedding layers.
        blocks: indices of blocks to freeze (see `backbone_blocks`; negative
            indices count from the end).

    Returns:
        `model`. Compile (again) after freezing: Keras collects the trainable
        weights when a model is compiled.

    Example:
    >>> from keras_attn.models import Classifier
    >>> classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=3)
    >>> _ = freeze(classifier, embeddings=True, blocks=[0, 1])  # tune the top block and head
    >>> [block.trainable for block in classifier.backbone.blocks]
    [False, False, True]
    """
    _check_task(model)
    if backbone:
        model.backbone.trainable = False
    if embeddings:
        for layer in embedding_layers(model):
            layer.trainable = False
    all_blocks = backbone_blocks(model)
    for index in blocks:
        if not -len(all_blocks) <= index < len(all_blocks):
            raise ValueError(
                f"`blocks` holds {index!r}, but the backbone has {len(all_blocks)} blocks "
                f"(valid indices {-len(all_blocks)} .. {len(all_blocks) - 1})"
            )
        all_blocks[index].trainable = False
    return model


def lora_target_layers(model, targets=LORA_TARGETS):
    """The projection layers LoRA adapts: the query/key/value/output
    projections of every attention layer and the dense layers of every
    feed-forward network."""
    targets = tuple(targets)
    for target in targets:
        check_choice("targets", target, LORA_TARGETS)
    layers = []
    for block in backbone_blocks(model):
        if "attention" in targets:
            for name in ("self_attention", "cross_attention"):
                attention = getattr(block, name, None)
                if attention is not None:
                    layers += [
                        attention.query_dense,
                        attention.key_dense,
                        attention.value_dense,
                        attention.output_dense,
                    ]
        if "feed_forward" in targets:
            feed_forward = block.feed_forward
            for name in ("intermediate_dense", "gate_dense", "output_dense"):
                layer = getattr(feed_forward, name, None)
                if layer is not None:
                    layers.append(layer)
    return layers


def enable_lora(model, rank, targets=LORA_TARGETS, alpha=None):
    """Adds rank-`rank` adapters (Hu et al. 2021) to the projections and
    freezes everything else in the backbone.

    Keras' own `enable_lora` freezes each adapted kernel and adds two small
    trainable matrices; here the embeddings, norms and biases of the backbone
    are frozen too, so only the adapters and the task head train.

    Args:
        model: a `keras_attn.models` task.
        rank: adapter rank.
        targets: `"attention"` and/or `"feed_forward"`.
        alpha: LoRA scaling numerator (default: `rank`, a scale of 1).

    Returns:
        The adapted layers. Compile (again) before training; `merge_lora`
        (which `keras_attn.export.export` applies) folds the adapters in.

    Example:
    >>> from keras_attn.models import Classifier
    >>> classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> adapted = enable_lora(classifier, rank=2)
    >>> [layer.name for layer in adapted]
    ['query', 'key', 'value', 'attention_output', 'intermediate_dense', 'output_dense']
    >>> sorted({w.name for w in classifier.backbone.trainable_weights})  # only adapters train
    ['lora_kernel_a', 'lora_kernel_b']
    """
    _check_task(model)
    rank = check_positive_int("rank", rank)
    layers = lora_target_layers(model, targets)
    for layer in layers:
        if layer.lora_enabled:
            raise ValueError(f"LoRA is already enabled on {layer.name!r}; merge_lora first")
        layer.enable_lora(rank, lora_alpha=alpha or rank)
    adapters = {id(w) for layer in layers for w in (layer.lora_kernel_a, layer.lora_kernel_b)}
    for weight in model.backbone.trainable_weights:
        if id(weight) not in adapters:
            weight.trainable = False
    return layers


def has_lora(model):
    return any(layer.lora_enabled for layer in lora_target_layers(model))


def merge_lora(model):
    """A copy of `model` without adapters, whose kernels include them.

    Keras writes an adapted kernel as `kernel + scale * A @ B` when it saves
    weights, so a plain copy of the architecture that loads those weights
    computes the same function with ordinary dense kernels.

    Example:
    >>> from keras_attn.models import Classifier
    >>> classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> for layer in enable_lora(classifier, rank=2):  # as if trained: B starts at 0
    ...     _ = layer.lora_kernel_b.assign(np.full(layer.lora_kernel_b.shape, 0.05, "float32"))
    >>> merged = merge_lora(classifier)
    >>> inputs = classifier.texts_to_inputs(["a fine film"]).inputs
    >>> has_lora(classifier), has_lora(merged)
    (True, False)
    >>> bool(np.allclose(classifier(inputs), merged(inputs), atol=1e-5))
    True
    """
    _check_task(model)
    config = model.get_config()
    for name in model.tokenizer_names:
        config[name] = getattr(model, name)
    merged = type(model).from_config(config)
    with tempfile.TemporaryDirectory(prefix="keras_attn_lora_") as directory:
        path = os.path.join(directory, "merged.weights.h5")
        model.save_weights(path)
        merged.load_weights(path)
    return merged


def _check_task(model):
    if not isinstance(model, Task):
        raise ValueError(
            "`model` must be a keras_attn.models task (Generator, Classifier, "
            f"MaskedLanguageModel, Translator). Received: {type(model).__name__}"
        )
