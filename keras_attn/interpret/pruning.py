"""Pruning attention heads (Michel et al. 2019): a new, smaller model with
some heads removed and the others' weights kept, and the task metric as a
function of the share of heads removed."""

import math
import numbers

import numpy as np

from keras_attn.interpret.head_importance import (
    HeadImportance,
    head_importance,
    model_head_counts,
)
from keras_attn.utils.arguments import check_number_in_range

# The backbone sublayers holding each attention kind, and the block
# attribute of the attention itself: (blocks attribute, attention attribute)
# in the order tried.
_ATTENTION_LAYERS = {
    "encoder": (("encoder_blocks", "self_attention"), ("blocks", "self_attention")),
    "decoder": (("decoder_blocks", "self_attention"), ("blocks", "self_attention")),
    "cross": (("decoder_blocks", "cross_attention"),),
}


def prune_heads(model, heads_to_remove):
    """A new model of the same class without the given attention heads.

    The remaining heads keep their query, key, value (and gate) projections
    and their rows of the output projection; every other weight is copied.
    The result equals `model` called with a head mask of 0 on the removed
    heads (up to float rounding), and trains, decodes, saves (`.keras`,
    `save_to_preset`) and exports like any model of its class: its
    backbone's `num_heads` is a list of per-layer head counts (a dict of
    them for a `Seq2SeqBackbone`). It is not compiled.

    Args:
        model: a task (`Generator`, `Classifier`, `MaskedLanguageModel`,
            `Translator`).
        heads_to_remove: `{kind: {layer: [head, ...]}}`, kinds among
            `model.attention_kinds` (`"encoder"`, `"decoder"`, `"cross"`).
            Every layer must keep at least one head. With grouped-query
            attention (`num_key_value_heads` set), each layer must lose the
            same number of heads from every key/value group, so the groups
            stay whole.

    Returns:
        The pruned model; `model` is unchanged.

    Example:
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=2)
    >>> smaller = prune_heads(model, {"encoder": {0: [1, 3], 1: [0]}})
    >>> smaller.backbone.head_counts
    [2, 3]
    """
    counts = model_head_counts(model)
    removed = _checked_removals(model, counts, heads_to_remove)
    kept = {
        kind: [
            [h for h in range(count) if h not in removed.get(kind, {}).get(layer, ())]
            for layer, count in enumerate(layer_counts)
        ]
        for kind, layer_counts in counts.items()
    }
    pruned = _rebuild(model, {kind: [len(heads) for heads in k] for kind, k in kept.items()})
    _copy_weights(model, pruned, kept)
    return pruned


def prune_least_important(model, importance, share):
    """`prune_heads` of the `share` of all heads (over every attention kind
    and layer) with the lowest importance, never a layer's last head.

    Args:
        model: a task.
        importance: a `HeadImportance` of this model (`head_importance`);
            normalised scores make layers comparable.
        share: in [0, 1): `floor(share * total heads)` heads are removed.

    Returns:
        `(pruned_model, removed)`, `removed` being the
        `{kind: {layer: [heads]}}` given to `prune_heads`.

    Example:
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=2)
    >>> data = model.make_dataset(["good", "bad"], [1, 0], batch_size=2, shuffle=False)
    >>> pruned, removed = prune_least_important(model, head_importance(model, data), 0.25)
    >>> sum(pruned.backbone.head_counts)
    6
    """
    share = check_number_in_range("share", share, 0, 1, include_high=False)
    if not isinstance(importance, HeadImportance):
        raise ValueError(
            "`importance` must be a HeadImportance (from head_importance(model, data)). "
            f"Received: {type(importance).__name__}"
        )
    counts = model_head_counts(model)
    if importance.head_counts != counts:
        raise ValueError(
            "`importance` must be computed on this model: its head counts "
            f"{importance.head_counts} differ from the model's {counts}"
        )
    key_value_heads = getattr(model.backbone, "num_key_value_heads", None)
    total = sum(sum(c) for c in counts.values())
    wanted = math.floor(share * total + 1e-9)
    if wanted and key_value_heads is not None:
        raise ValueError(
            "prune_least_important removes single heads, which would break the key/value "
            f"groups of grouped-query attention (num_key_value_heads={key_value_heads}). "
            "Use prune_heads with the same number of heads from every group of a layer."
        )
    layers = sum(len(c) for c in counts.values())
    if wanted > total - layers:
        raise ValueError(
            f"`share` must leave every layer one head: at most {total - layers} of the "
            f"{total} heads can go (share < {(total - layers + 1) / total:.3f}). Received: "
            f"share={share} ({wanted} heads)"
        )
    left = {kind: list(c) for kind, c in counts.items()}
    removed, count = {}, 0
    for kind, layer, head, _ in importance.ranked():
        if count == wanted:
            break
        if left[kind][layer] == 1:
            continue
        left[kind][layer] -= 1
        removed.setdefault(kind, {}).setdefault(layer, []).append(head)
        count += 1
    return prune_heads(model, removed), removed


def pruning_curve(
    model,
    data,
    shares=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    metric=None,
    importance=None,
    evaluation_options=None,
):
    """The task metric against the share of heads pruned (Michel et al.'s
    figure): for each share, `prune_least_important` then
    `model.evaluate_data(data)`.

    Args:
        model: a task.
        data: examples from `keras_attn.data`: scored at every share, and
            the importance's data unless `importance` is given.
        shares: increasing shares in [0, 1).
        metric: a key of the task's `evaluate_data` metrics (generator
            `perplexity` or `loss`, classifier `accuracy`, translator
            `exact_match` or `bleu`, masked LM `masked_accuracy`, ...);
            default: the first number it reports.
        importance: a `HeadImportance` of `model` (default: computed on
            `data`).
        evaluation_options: passed to `evaluate_data` (e.g.
            `{"num_examples": 100}`).

    Returns:
        A list of `(share, metric value)`, one per share, in order.

    Example:
    >>> from keras_attn.data import ClassificationData
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> data = ClassificationData(["a good film", "a bad film"], [1, 0], ["neg", "pos"])
    >>> curve = pruning_curve(model, data, shares=(0.0, 0.5), metric="accuracy")
    >>> [share for share, _ in curve], all(0 <= accuracy <= 1 for _, accuracy in curve)
    ([0.0, 0.5], True)
    """
    shares = [
        check_number_in_range(f"shares[{i}]", s, 0, 1, include_high=False)
        for i, s in enumerate(shares)
    ]
    if not shares or any(b <= a for a, b in zip(shares, shares[1:])):
        raise ValueError(f"`shares` must be a non-empty increasing list. Received: {shares}")
    if importance is None:
        importance = head_importance(model, data)
    curve = []
    for share in shares:
        pruned = prune_least_important(model, importance, share)[0] if share else model
        metrics, _ = pruned.evaluate_data(data, dict(evaluation_options or {}))
        curve.append((share, _pick_metric(metrics, metric)))
    return curve


def _pick_metric(metrics, metric):
    numbers_reported = [
        key for key, value in metrics.items()
        if isinstance(value, float) and key != "examples"
    ]
    if metric is None:
        if not numbers_reported:
            raise ValueError(f"evaluate_data reported no metric: {metrics}")
        metric = numbers_reported[0]
    if metric not in metrics:
        raise ValueError(
            f"`metric` must be one the task reports, among {numbers_reported}. "
            f"Received: metric={metric!r}"
        )
    return float(metrics[metric])


# -------------------------------------------------------------- internals


def _checked_removals(model, counts, heads_to_remove):
    """`{kind: {layer: sorted unique heads}}`, every index checked."""
    if not isinstance(heads_to_remove, dict):
        raise ValueError(
            "`heads_to_remove` must be a dict {kind: {layer: [heads]}}. Received: "
            f"{type(heads_to_remove).__name__}"
        )
    removed = {}
    for kind, layers in heads_to_remove.items():
        if kind not in counts:
            raise ValueError(
                f"`heads_to_remove` kinds must be attention kinds of this {model.task_name}, "
                f"among {list(counts)}. Received: {kind!r}"
            )
        if not isinstance(layers, dict):
            raise ValueError(
                f"`heads_to_remove[{kind!r}]` must be a dict {{layer: [heads]}}. Received: "
                f"{type(layers).__name__}"
            )
        layer_counts = counts[kind]
        for layer, heads in layers.items():
            if not _is_index(layer) or not 0 <= layer < len(layer_counts):
                raise ValueError(
                    f"`heads_to_remove[{kind!r}]` layers must be ints in [0, "
                    f"{len(layer_counts)}). Received: layer {layer!r}"
                )
            heads = list(heads)
            count = layer_counts[layer]
            for head in heads:
                if not _is_index(head) or not 0 <= head < count:
                    raise ValueError(
                        f"`heads_to_remove[{kind!r}][{layer}]` heads must be ints in [0, "
                        f"{count}) (the layer has {count} heads). Received: head {head!r}"
                    )
            heads = sorted(set(int(h) for h in heads))
            if len(heads) == count:
                raise ValueError(
                    f"`heads_to_remove[{kind!r}][{layer}]` removes all {count} heads of the "
                    "layer; every layer must keep at least one head"
                )
            if heads:
                removed.setdefault(kind, {})[int(layer)] = heads
    _check_key_value_groups(model, counts, removed)
    return removed


def _is_index(value):
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool)


def _check_key_value_groups(model, counts, removed):
    key_value_heads = getattr(model.backbone, "num_key_value_heads", None)
    if key_value_heads is None:
        return
    for kind, layers in removed.items():
        for layer, heads in layers.items():
            group_size = counts[kind][layer] // key_value_heads
            per_group = [
                sum(1 for h in heads if h // group_size == group)
                for group in range(key_value_heads)
            ]
            if len(set(per_group)) > 1:
                raise ValueError(
                    f"With grouped-query attention (num_key_value_heads={key_value_heads}), "
                    "every layer must lose the same number of heads from each key/value "
                    f"group of {group_size} heads. Received for {kind!r} layer {layer}: "
                    f"heads {heads}, removing {per_group} per group"
                )


def _rebuild(model, head_counts):
    """A fresh model of `model`'s class whose backbone has `head_counts`."""
    backbone = model.backbone
    config = backbone.get_config()
    attributes = {
        kind: model.attention_kinds[kind].head_counts for kind in head_counts
    }
    if all(attribute == "head_counts" for attribute in attributes.values()):
        (counts,) = head_counts.values()
        config["num_heads"] = list(counts)
    else:
        # One count list per group, named by the backbone's attributes
        # (`encoder_head_counts` -> "encoder").
        config["num_heads"] = {
            attributes[kind].removesuffix("_head_counts"): list(counts)
            for kind, counts in head_counts.items()
        }
    new_backbone = type(backbone).from_config(config)
    task_config = model.get_config()
    task_config["backbone"] = new_backbone
    for name in model.tokenizer_names:
        task_config[name] = getattr(model, name)
    task_config.pop("name", None)
    return type(model).from_config(task_config)


def _attention_layers(backbone, kind):
    for blocks_name, attention_name in _ATTENTION_LAYERS.get(kind, ()):
        blocks = getattr(backbone, blocks_name, None)
        if blocks is not None:
            return [getattr(block, attention_name) for block in blocks]
    raise ValueError(
        f"Cannot find the {kind!r} attention layers of a {type(backbone).__name__}; pruning "
        "knows the keras-attn backbones"
    )


def _copy_weights(source, target, kept):
    """Copies `source`'s weights into the pruned `target`; attention layers
    keep the rows of their `kept` heads."""
    handled_source, handled_target = set(), set()
    for kind, layers_kept in kept.items():
        pairs = zip(
            _attention_layers(source.backbone, kind),
            _attention_layers(target.backbone, kind),
            layers_kept,
        )
        for old, new, heads in pairs:
            _copy_attention(old, new, heads)
            handled_source.update(id(v) for v in old.weights)
            handled_target.update(id(v) for v in new.weights)
    rest_source = [v for v in source.weights if id(v) not in handled_source]
    rest_target = [v for v in target.weights if id(v) not in handled_target]
    if len(rest_source) != len(rest_target):
        raise ValueError(
            f"Cannot prune this {type(source).__name__}: the pruned model has "
            f"{len(rest_target)} weights outside attention, the model {len(rest_source)}"
        )
    for old, new in zip(rest_source, rest_target):
        if tuple(old.shape) != tuple(new.shape):
            raise ValueError(
                f"Cannot prune this {type(source).__name__}: weight {old.path} has shape "
                f"{tuple(old.shape)} but its pruned counterpart {new.path} {tuple(new.shape)}"
            )
        new.assign(old)


def _copy_attention(old, new, heads):
    """`new` (a `MultiHeadAttention` with `len(heads)` heads) gets `old`'s
    weights of `heads`."""
    projections = old._projections()
    for name, layer in projections.items():
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            raise ValueError(
                f"Cannot prune attention layer {old.path}: its {name!r} projection is "
                "quantized or has LoRA adapters; prune the float model first"
            )
    heads = np.asarray(heads)
    if old.num_key_value_heads == old.num_heads:
        key_value_heads = heads  # one key/value head per query head
    else:
        # Every group lost as many heads (checked before): all key/value
        # heads stay, and kept head j of the pruned layer still reads key/value
        # head j // (new group size), the group it came from.
        key_value_heads = np.arange(old.num_key_value_heads)
    targets = new._projections()
    for name, layer in projections.items():
        kernel, bias = layer.kernel, getattr(layer, "bias", None)
        if name == "attention_output":
            # (heads, value_dim, *output) : the rows of the kept heads.
            targets[name].kernel.assign(np.take(np.asarray(kernel), heads, axis=0))
            if bias is not None:
                targets[name].bias.assign(bias)
            continue
        # (features, heads, head_size) and bias (heads, head_size).
        kept = key_value_heads if name in ("key", "value") else heads
        targets[name].kernel.assign(np.take(np.asarray(kernel), kept, axis=-2))
        if bias is not None:
            targets[name].bias.assign(np.take(np.asarray(bias), kept, axis=-2))
    if old._rotary is not None:
        for old_weight, new_weight in zip(old._rotary.weights, new._rotary.weights):
            new_weight.assign(old_weight)
