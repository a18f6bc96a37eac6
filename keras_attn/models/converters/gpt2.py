"""GPT-2 from keras-hub: `GPT2Backbone` -> `DecoderBackbone` with the same
numbers, and its byte-level BPE tokenizer -> `BytePairTokenizer`."""

import numpy as np

from keras_attn.models.converters.keras_hub_checkpoints import (
    check_transformer_layer,
    copy_weights_by_path,
)
from keras_attn.models.decoder_backbone import DecoderBackbone
from keras_attn.tokenizers.byte_pair_tokenizer import BytePairTokenizer
from keras_attn.tokenizers.special_tokens import SPECIAL_ROLES
from keras_attn.utils.arguments import check_positive_int

# keras-hub weight path pieces -> ours (the layer structure is the same).
_PATH_PARTS = (
    ("token_embedding/", "embedding/token_embedding/"),
    ("position_embedding/", "embedding/position_embedding/"),
    ("transformer_layer_", "decoder_block_"),
    ("self_attention_layer_norm/", "self_attention_norm/"),
    ("feedforward_layer_norm/", "feed_forward_norm/"),
    ("feedforward_intermediate_dense/", "feed_forward/intermediate_dense/"),
    ("feedforward_output_dense/", "feed_forward/output_dense/"),
)


def convert_gpt2_backbone(hub_backbone, sequence_length=None, dropout=None):
    """A `DecoderBackbone` computing what keras-hub's `GPT2Backbone` does.

    GPT-2 is pre-norm with learned positions, tanh-approximated GELU
    (`activation="gelu_approximate"`), layer norms with epsilon 1e-5,
    biases everywhere and an output projection tied to the token
    embedding. It has no padding token (`pad_token_id=None`): pass a
    `padding_mask` with padded ids, as keras-hub does; right padding needs
    none for the real positions, attention being causal.

    Args:
        hub_backbone: a built `keras_hub.models.GPT2Backbone`.
        sequence_length: the converted model's `sequence_length` (its
            decoding buffer); default the checkpoint's
            `max_sequence_length` (1024 for the released models). A shorter
            one keeps the first rows of the position table.
        dropout: the converted model's dropout; default the checkpoint's.

    Returns:
        A float32 `DecoderBackbone` holding copies of every weight.

    Raises:
        ValueError: naming the setting, for a keras-hub model that is not a
            plain GPT-2 (another class, post-norm layers, another epsilon or
            activation, layers without biases) or a `sequence_length`
            longer than the checkpoint's position table.

    Example:
    >>> import keras_hub
    >>> hub = keras_hub.models.GPT2Backbone(vocabulary_size=300, num_layers=2,
    ...     num_heads=4, hidden_dim=32, intermediate_dim=64, max_sequence_length=64)
    >>> backbone = convert_gpt2_backbone(hub, sequence_length=32)
    >>> backbone.sequence_length, backbone.pad_token_id
    (32, None)
    """
    name = type(hub_backbone).__name__
    if name != "GPT2Backbone":
        raise ValueError(
            f"convert_gpt2_backbone converts a keras-hub GPT2Backbone. Received: {name}"
        )
    config = hub_backbone.get_config()
    max_length = int(config["max_sequence_length"])
    if sequence_length is None:
        sequence_length = max_length
    sequence_length = check_positive_int("sequence_length", sequence_length)
    if sequence_length > max_length:
        raise ValueError(
            f"`sequence_length` must be at most the checkpoint's max_sequence_length "
            f"({max_length}): GPT-2 has no positions past it. Received: "
            f"sequence_length={sequence_length}"
        )
    for layer in hub_backbone.transformer_layers:
        _check_layer(layer)
    if not np.isclose(hub_backbone.layer_norm.epsilon, 1e-5):
        raise ValueError(
            "GPT-2 conversion supports a final layer norm epsilon of 1e-5. Received: "
            f"layer_norm.epsilon={hub_backbone.layer_norm.epsilon}"
        )
    backbone = DecoderBackbone(
        vocabulary_size=int(config["vocabulary_size"]),
        sequence_length=sequence_length,
        num_layers=int(config["num_layers"]),
        num_heads=int(config["num_heads"]),
        hidden_dim=int(config["hidden_dim"]),
        intermediate_dim=int(config["intermediate_dim"]),
        dropout=float(config["dropout"] if dropout is None else dropout),
        activation="gelu_approximate",
        normalization="layer_norm",
        position_encoding="learned",
        tie_embeddings=True,
        norm_epsilon=1e-5,
        pad_token_id=None,
        dtype="float32",
    )
    copy_weights_by_path(hub_backbone, backbone, _our_path, "GPT-2", {
        "embedding/position_embedding/embeddings": sequence_length,
    })
    return backbone


def convert_gpt2_tokenizer(hub_tokenizer):
    """A `BytePairTokenizer` giving keras-hub's `GPT2Tokenizer` ids.

    GPT-2 has one special token, `<|endoftext|>`: it plays every role
    (`pad`, `unk`, `bos`, `eos`, `sep`, `cls`, `mask`), so generation
    starts from it, stops at it, and pads with it (the preprocessors' masks
    and sample weights, not the id, mark the padding).

    Args:
        hub_tokenizer: a `keras_hub.models.GPT2Tokenizer` (or another
            keras-hub `BytePairTokenizer` with an `end_token_id`).
    """
    vocabulary = getattr(hub_tokenizer, "vocabulary", None)
    merges = getattr(hub_tokenizer, "merges", None)
    end = getattr(hub_tokenizer, "end_token_id", None)
    if vocabulary is None or merges is None or end is None:
        raise ValueError(
            "`tokenizer` must be a keras-hub GPT2Tokenizer with its vocabulary, merges and "
            f"end token. Received: {type(hub_tokenizer).__name__}"
        )
    return BytePairTokenizer(
        vocabulary=dict(vocabulary),
        merges=list(merges),
        special_token_ids={role: int(end) for role in SPECIAL_ROLES},
        unsplittable_tokens=list(hub_tokenizer.unsplittable_tokens or []),
        add_prefix_space=bool(hub_tokenizer.add_prefix_space),
    )


def _check_layer(layer):
    check_transformer_layer(layer, "GPT-2", norm_first=True, activation="gelu_approximate")
    if getattr(layer, "_cross_attention_layer", None) is not None:
        raise ValueError(f"GPT-2 conversion supports no cross-attention. Received: {layer.name}")

def _our_path(path):
    for theirs, ours in _PATH_PARTS:
        path = path.replace(theirs, ours)
    if path.startswith("layer_norm/"):
        path = "final_norm/" + path[len("layer_norm/"):]
    return path


