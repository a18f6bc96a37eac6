"""keras-hub's LLaMA (`LlamaBackbone`, `LlamaTokenizer`) as a keras-attn
`DecoderBackbone` and `SentencePieceTokenizer` with the same numbers.

LLaMA is a pre-norm decoder with rotary positions (no position table),
grouped-query attention, RMSNorm, a SwiGLU feed-forward network, no biases
and an untied output matrix: `DecoderBackbone(position_encoding="rotary",
normalization="rms_norm", activation="swiglu", use_bias=False,
tie_embeddings=False)`, every weight copied as it is (both libraries keep
the projections as `(hidden, heads, head_dim)` einsum kernels).
"""

import keras

from keras_attn.models.decoder_backbone import DecoderBackbone
from keras_attn.tokenizers.sentence_piece_tokenizer import SentencePieceTokenizer
from keras_attn.utils.arguments import check_positive_int

# keras-hub's LlamaBackbone has no longest sequence of its own (rotary
# positions have no table); keras-attn's backbones bound their decoding
# buffers, so the conversion picks one unless told.
DEFAULT_SEQUENCE_LENGTH = 2048

# LLaMA's SentencePiece model has `<unk>`, `<s>` and `</s>` only. keras-hub
# pads with id 0 (`<unk>`) behind a padding mask; the roles LLaMA lacks map
# to the closest piece it has.
LLAMA_SPECIAL_TOKENS = {
    "pad": "<unk>",
    "unk": "<unk>",
    "bos": "<s>",
    "eos": "</s>",
    "sep": "</s>",
    "cls": "<s>",
    "mask": "<unk>",
}

# Settings of keras-hub's LlamaBackbone that keras-attn cannot express, with
# the value that means "off".
_LLAMA_3_ROPE_SETTINGS = (
    "rope_frequency_adjustment_factor",
    "rope_low_freq_factor",
    "rope_high_freq_factor",
    "rope_pretraining_sequence_length",
)


def llama_backbone_config(hub_backbone, sequence_length=DEFAULT_SEQUENCE_LENGTH):
    """The `DecoderBackbone` config equal to a keras-hub `LlamaBackbone`.

    Raises:
        ValueError: naming the setting, for a LLaMA keras-attn cannot express
            exactly: LLaMA 3.1+ rotary frequency scaling, or a
            `rope_position_scaling_factor` other than 1 (keras-hub 0.32's
            LLaMA attention ignores it, so the converted model would differ
            either from keras-hub's numbers or from the checkpoint's intent).
    """
    _check_class(hub_backbone)
    sequence_length = check_positive_int("sequence_length", sequence_length)
    for setting in _LLAMA_3_ROPE_SETTINGS:
        value = getattr(hub_backbone, setting, None)
        if value is not None:
            raise ValueError(
                f"keras-attn cannot convert this LlamaBackbone: {setting}={value!r} (LLaMA "
                "3.1+ rotary frequency scaling) has no keras-attn equivalent. Received a "
                "backbone with it set; only None is supported"
            )
    scaling = hub_backbone.rope_position_scaling_factor
    if scaling != 1.0:
        raise ValueError(
            "keras-attn cannot convert this LlamaBackbone: rope_position_scaling_factor="
            f"{scaling!r}. keras-hub's LLaMA attention ignores it (its rotary embedding "
            "computes unscaled positions), so no keras-attn model has both keras-hub's "
            "numbers and the scaling the checkpoint asks for; only 1.0 is supported"
        )
    hidden_dim, num_heads = hub_backbone.hidden_dim, hub_backbone.num_query_heads
    if hidden_dim % num_heads:
        raise ValueError(
            f"keras-attn cannot convert this LlamaBackbone: hidden_dim={hidden_dim} is not "
            f"divisible by num_query_heads={num_heads}"
        )
    config = dict(
        vocabulary_size=hub_backbone.vocabulary_size,
        sequence_length=sequence_length,
        num_layers=hub_backbone.num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=hub_backbone.intermediate_dim,
        head_dim=hidden_dim // num_heads,
        num_key_value_heads=hub_backbone.num_key_value_heads,
        dropout=float(hub_backbone.dropout),
        activation="swiglu",
        normalization="rms_norm",
        position_encoding="rotary",
        rope_max_wavelength=hub_backbone.rope_max_wavelength,
        tie_embeddings=bool(hub_backbone.token_embedding.tie_weights),
        norm_epsilon=float(hub_backbone.layer_norm_epsilon),
        use_bias=False,
        # LLaMA has no padding token: its id 0 is `<unk>`, a real token.
        # keras-hub pads with 0 behind an explicit padding mask; so do the
        # preprocessors here, with sample weights.
        pad_token_id=None,
    )
    return config


def convert_llama_backbone(hub_backbone, sequence_length=DEFAULT_SEQUENCE_LENGTH, dtype=None):
    """A `DecoderBackbone` computing what a keras-hub `LlamaBackbone` does.

    Args:
        hub_backbone: a built `keras_hub.models.LlamaBackbone`.
        sequence_length: the longest sequence (prompt and continuation) the
            converted model decodes; LLaMA itself has no limit.
        dtype: dtype policy of the converted model; defaults to the keras-hub
            backbone's.

    Returns:
        A `DecoderBackbone` with every weight of `hub_backbone` copied. Feed
        it `{"token_ids", "padding_mask"}` as keras-hub's: LLaMA's id 0 is
        `<unk>`, not padding, so the default mask `token_ids != 0` is not
        LLaMA's.

    Raises:
        ValueError: for settings keras-attn cannot express (see
            `llama_backbone_config`), naming them.

    Example:
    >>> import keras_hub
    >>> hub = keras_hub.models.LlamaBackbone(vocabulary_size=300, num_layers=1,
    ...     num_query_heads=4, num_key_value_heads=2, hidden_dim=32,
    ...     intermediate_dim=64)
    >>> backbone = convert_llama_backbone(hub, sequence_length=64)
    >>> backbone.num_key_value_heads, backbone.use_bias
    (2, False)
    """
    config = llama_backbone_config(hub_backbone, sequence_length)
    backbone = DecoderBackbone(**config, dtype=dtype or hub_backbone.dtype_policy)
    copy_llama_weights(hub_backbone, backbone)
    return backbone


def copy_llama_weights(hub_backbone, backbone):
    """Copies every weight of a keras-hub `LlamaBackbone` into a
    `DecoderBackbone` built from `llama_backbone_config`; checks that each
    keras-hub weight is read exactly once."""
    pairs = [(hub_backbone.token_embedding.embeddings, backbone.token_embedding.embeddings)]
    if not hub_backbone.token_embedding.tie_weights:
        pairs.append(
            (
                hub_backbone.token_embedding.reverse_embeddings,
                backbone.token_embedding.reverse_embeddings,
            )
        )
    for hub_block, block in zip(hub_backbone.transformer_layers, backbone.blocks):
        attention = hub_block._self_attention_layer
        pairs += [
            (attention._query_dense.kernel, block.self_attention.query_dense.kernel),
            (attention._key_dense.kernel, block.self_attention.key_dense.kernel),
            (attention._value_dense.kernel, block.self_attention.value_dense.kernel),
            (attention._output_dense.kernel, block.self_attention.output_dense.kernel),
            (hub_block._self_attention_layernorm.scale, block.self_attention_norm.scale),
            (
                hub_block._feedforward_intermediate_dense.kernel,
                block.feed_forward.intermediate_dense.kernel,
            ),
            (hub_block._feedforward_gate_dense.kernel, block.feed_forward.gate_dense.kernel),
            (hub_block._feedforward_output_dense.kernel, block.feed_forward.output_dense.kernel),
            (hub_block._feedforward_layernorm.scale, block.feed_forward_norm.scale),
        ]
    pairs.append((hub_backbone.layer_norm.scale, backbone.final_norm.scale))
    _assign(pairs, hub_backbone, backbone)


def convert_llama_tokenizer(hub_tokenizer):
    """A `SentencePieceTokenizer` giving keras-hub's `LlamaTokenizer` ids.

    The checkpoint's SentencePiece model is kept as it is (its pieces, ids,
    normalization); `<unk>`, `<s>`, `</s>` keep their ids (0, 1, 2 in
    LLaMA's), with `LLAMA_SPECIAL_TOKENS` naming the piece of each role.
    Padding is id 0 (`<unk>`), as keras-hub pads, behind a padding mask.
    """
    proto = getattr(hub_tokenizer, "proto", None)
    if proto is None:
        raise ValueError(
            "`hub_tokenizer` must be a keras-hub SentencePiece tokenizer with its model "
            f"loaded. Received: a {type(hub_tokenizer).__name__} without a proto"
        )
    return SentencePieceTokenizer(proto=proto, special_tokens=LLAMA_SPECIAL_TOKENS)


def _check_class(hub_backbone):
    if type(hub_backbone).__name__ != "LlamaBackbone":
        raise ValueError(
            "`hub_backbone` must be a keras-hub LlamaBackbone. Received: a "
            f"{type(hub_backbone).__name__}"
        )


def _assign(pairs, hub_backbone, backbone):
    read = {id(source) for source, _ in pairs}
    unread = [w.path for w in hub_backbone.weights if id(w) not in read]
    if unread or len(read) != len(pairs):
        raise ValueError(
            f"The LlamaBackbone has weights keras-attn does not map: {unread}. Received a "
            "backbone this converter does not know"
        )
    for source, target in pairs:
        value = keras.ops.convert_to_numpy(source)
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"Weight {source.path} has shape {value.shape}, keras-attn's {target.path} "
                f"{tuple(target.shape)}"
            )
        target.assign(value.astype(target.dtype))
    written = {id(target) for _, target in pairs}
    missing = [w.path for w in backbone.weights if id(w) not in written]
    if missing:
        raise ValueError(f"The converted backbone has weights no LLaMA weight fills: {missing}")
