"""Reading a keras-hub checkpoint for conversion: a preset name (keras-hub
downloads it) or a keras-hub backbone or task already built (offline)."""

import keras
import keras_hub
import numpy as np

from keras_attn.utils.arguments import ArgumentError


def keras_hub_parts(preset_or_model, tokenizer=None):
    """The keras-hub backbone and tokenizer behind `preset_or_model`.

    Args:
        preset_or_model: a keras-hub preset name or handle (e.g.
            `"gpt2_base_en"`, `"hf://..."`, a local preset directory), which
            keras-hub loads (a download needs the internet); or a built
            `keras_hub.models.Backbone`, or a `keras_hub.models.Task` (its
            preprocessor's tokenizer comes along).
        tokenizer: a keras-hub tokenizer to use instead of the one found
            (required with a bare backbone, whose vocabulary is elsewhere).

    Returns:
        `(backbone, tokenizer)`, both keras-hub objects; the tokenizer is
        `None` when none was given or found.
    """
    if isinstance(preset_or_model, str):
        backbone = _from_preset(keras_hub.models.Backbone, preset_or_model, "backbone")
        if tokenizer is None:
            tokenizer = _from_preset(keras_hub.tokenizers.Tokenizer, preset_or_model, "tokenizer")
        return backbone, tokenizer
    if isinstance(preset_or_model, keras_hub.models.Backbone):
        return preset_or_model, tokenizer
    if isinstance(preset_or_model, keras_hub.models.Task):
        preprocessor = getattr(preset_or_model, "preprocessor", None)
        if tokenizer is None and preprocessor is not None:
            tokenizer = getattr(preprocessor, "tokenizer", None)
        return preset_or_model.backbone, tokenizer
    raise ArgumentError.of(
        "preset_or_model", "a keras-hub preset name, or a keras-hub Backbone or Task",
        preset_or_model, received=f"preset_or_model of type {type(preset_or_model).__name__}",
    )


def check_backbone_class(backbone, converters, converted_by):
    """The converter registered for `type(backbone)` in `converters`
    (`{class name: converter}`); a clear error listing the supported
    families otherwise."""
    name = type(backbone).__name__
    if name not in converters:
        raise ValueError(
            f"{converted_by} converts {', '.join(sorted(converters))}. Received a keras-hub "
            f"{name}, which keras-attn cannot express as this task"
        )
    return converters[name]


def check_transformer_layer(layer, family, norm_first, activation, epsilon=1e-5):
    """Raises unless a keras-hub Transformer layer has the block layout,
    activation and layer-norm epsilon `family`'s conversion maps exactly.

    Args:
        layer: a keras-hub `TransformerEncoder` / `TransformerDecoder`.
        family: the checkpoint family, for messages (e.g. `"GPT-2"`).
        norm_first: the expected `normalize_first` (pre-norm).
        activation: the expected activation's name (`"gelu"` is the erf
            GELU, `"gelu_approximate"` the tanh one).
        epsilon: the expected layer-norm epsilon.
    """
    name = layer.name
    if bool(layer.normalize_first) != norm_first:
        layout = "pre-norm" if norm_first else "post-norm"
        raise ValueError(
            f"{family} conversion supports {layout} layers. Received: "
            f"{name}.normalize_first={bool(layer.normalize_first)}"
        )
    if not np.isclose(layer.layer_norm_epsilon, epsilon):
        raise ValueError(
            f"{family} conversion supports layer norms with epsilon {epsilon}. Received: "
            f"{name}.layer_norm_epsilon={layer.layer_norm_epsilon}"
        )
    found = getattr(layer.activation, "__name__", str(layer.activation))
    if found != activation:
        raise ValueError(
            f"{family} conversion supports the activation {activation!r}. Received: "
            f"{name}.activation={found}"
        )


def copy_weights_by_path(hub_backbone, backbone, our_path, family, kept_rows=None):
    """Copies every keras-hub weight onto the keras-attn weight at the same
    path (after `our_path` renames it), checking that each side has exactly
    the other's weights and that every shape matches.

    Args:
        hub_backbone, backbone: the keras-hub source and the keras-attn target.
        our_path: keras-hub weight path (without the model's name) -> the
            keras-attn path (without the model's name).
        family: the checkpoint family, for messages (e.g. `"GPT-2"`).
        kept_rows: keras-attn path -> rows kept of that weight (position
            tables of a model converted to a shorter length).
    """
    kept_rows = kept_rows or {}
    ours = {weight.path.split("/", 1)[1]: weight for weight in backbone.weights}
    theirs = {}
    for weight in hub_backbone.weights:
        path = weight.path
        if path.split("/", 1)[0] == hub_backbone.name:
            path = path.split("/", 1)[1]
        theirs[our_path(path)] = weight
    if set(theirs) != set(ours):
        raise ValueError(
            f"{family} conversion found weights it cannot place: "
            f"keras-hub only {sorted(set(theirs) - set(ours))[:5]}, "
            f"keras-attn only {sorted(set(ours) - set(theirs))[:5]}"
        )
    for path, target in ours.items():
        value = keras.ops.convert_to_numpy(theirs[path].value).astype("float32")
        if path in kept_rows:
            value = value[: kept_rows[path]]
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"{family} conversion: weight {path} has shape {value.shape} in keras-hub, "
                f"{tuple(target.shape)} here"
            )
        target.assign(value)


def _from_preset(cls, preset, what):
    try:
        return cls.from_preset(preset)
    except Exception as error:  # noqa: BLE001 - any failure is reported the same way
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise OSError(
            f"keras-hub could not load the {what} of preset {preset!r}: {reason}. A preset name "
            "is downloaded by keras-hub (this needs the internet); to convert offline, pass a "
            "keras-hub model already built"
        ) from error
