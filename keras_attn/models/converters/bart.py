"""BART from keras-hub: `BartBackbone` -> `Seq2SeqBackbone` with the same
numbers, and its byte-level BPE tokenizer -> `BytePairTokenizer`."""

import numpy as np

from keras_attn.models.converters.keras_hub_checkpoints import (
    check_transformer_layer,
    copy_weights_by_path,
)
from keras_attn.models.seq2seq_backbone import Seq2SeqBackbone
from keras_attn.tokenizers.byte_pair_tokenizer import BytePairTokenizer
from keras_attn.utils.arguments import check_positive_int

# BART's special tokens; `<unk>` and `<mask>` sit in the vocabulary but are
# not split out of text by keras-hub's tokenizer (only the first three are).
BART_SPECIAL_TOKENS = {
    "bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"
}

# keras-hub weight path pieces -> ours.
_PATH_PARTS = (
    ("token_embedding/", "source_embedding/token_embedding/"),
    ("encoder_position_embedding/", "source_embedding/position_embedding/"),
    ("decoder_position_embedding/", "target_position_embedding/"),
    ("encoder_embeddings_layer_norm/", "source_embedding_norm/"),
    ("decoder_embeddings_layer_norm/", "target_embedding_norm/"),
    ("transformer_encoder_layer_", "encoder_block_"),
    ("transformer_decoder_layer_", "decoder_block_"),
    ("self_attention_layer/", "self_attention/"),
    ("self_attention_layer_norm/", "self_attention_norm/"),
    ("cross_attention_layer_norm/", "cross_attention_norm/"),
    ("feedforward_layer_norm/", "feed_forward_norm/"),
    ("feedforward_intermediate_dense/", "feed_forward/intermediate_dense/"),
    ("feedforward_output_dense/", "feed_forward/output_dense/"),
)


def convert_bart_backbone(hub_backbone, source_length=None, target_length=None, dropout=None):
    """A `Seq2SeqBackbone` computing what keras-hub's `BartBackbone` does.

    BART is post-norm (`norm_first=False`) with learned positions, one
    table per side over one shared token matrix
    (`share_position_embeddings=False`), unscaled token embeddings
    (`scale_embeddings=False`), a layer norm on each side's embeddings
    (`embedding_norm=True`), erf GELU, layer norms with epsilon 1e-5, biases
    everywhere and an output projection tied to the token matrix. `<pad>`
    (id 1) is its padding id.

    Args:
        hub_backbone: a built `keras_hub.models.BartBackbone`.
        source_length, target_length: the converted model's longest source
            and target; default the checkpoint's `max_sequence_length`. A
            shorter one keeps the first rows of that side's position table.
        dropout: the converted model's dropout; default the checkpoint's.

    Returns:
        A float32 `Seq2SeqBackbone` holding copies of every weight.

    Raises:
        ValueError: naming the setting, for a keras-hub model that is not a
            plain BART (another class, pre-norm layers, another epsilon or
            activation) or a length longer than the checkpoint's positions.

    Example:
    >>> import keras_hub
    >>> hub = keras_hub.models.BartBackbone(vocabulary_size=300, num_layers=2,
    ...     num_heads=4, hidden_dim=32, intermediate_dim=64, max_sequence_length=64)
    >>> backbone = convert_bart_backbone(hub, source_length=32, target_length=16)
    >>> backbone.source_length, backbone.target_length, backbone.pad_token_id
    (32, 16, 1)
    """
    name = type(hub_backbone).__name__
    if name != "BartBackbone":
        raise ValueError(
            f"convert_bart_backbone converts a keras-hub BartBackbone. Received: {name}"
        )
    config = hub_backbone.get_config()
    max_length = int(config["max_sequence_length"])
    lengths = {}
    for argument, value in (("source_length", source_length), ("target_length", target_length)):
        value = check_positive_int(argument, max_length if value is None else value)
        if value > max_length:
            raise ValueError(
                f"`{argument}` must be at most the checkpoint's max_sequence_length "
                f"({max_length}): BART has no positions past it. Received: {argument}={value}"
            )
        lengths[argument] = value
    for layer in hub_backbone.encoder_transformer_layers + hub_backbone.decoder_transformer_layers:
        check_transformer_layer(layer, "BART", norm_first=False, activation="gelu")
    for norm in (
        hub_backbone.encoder_embeddings_layer_norm, hub_backbone.decoder_embeddings_layer_norm
    ):
        if not np.isclose(norm.epsilon, 1e-5):
            raise ValueError(
                "BART conversion supports embedding layer norms with epsilon 1e-5. Received: "
                f"{norm.name}.epsilon={norm.epsilon}"
            )
    vocabulary_size = int(config["vocabulary_size"])
    backbone = Seq2SeqBackbone(
        source_vocabulary_size=vocabulary_size,
        target_vocabulary_size=vocabulary_size,
        num_encoder_layers=int(config["num_layers"]),
        num_decoder_layers=int(config["num_layers"]),
        num_heads=int(config["num_heads"]),
        hidden_dim=int(config["hidden_dim"]),
        intermediate_dim=int(config["intermediate_dim"]),
        dropout=float(config["dropout"] if dropout is None else dropout),
        activation="gelu",
        normalization="layer_norm",
        norm_first=False,
        position_encoding="learned",
        share_embeddings=True,
        tie_embeddings=True,
        norm_epsilon=1e-5,
        pad_token_id=1,
        scale_embeddings=False,
        embedding_norm=True,
        share_position_embeddings=False,
        dtype="float32",
        **lengths,
    )
    copy_weights_by_path(hub_backbone, backbone, _our_path, "BART", {
        "source_embedding/position_embedding/embeddings": lengths["source_length"],
        "target_position_embedding/embeddings": lengths["target_length"],
    })
    return backbone


def convert_bart_tokenizer(hub_tokenizer):
    """A `BytePairTokenizer` giving keras-hub's `BartTokenizer` ids.

    Roles: `bos` and `cls` are `<s>`, `eos` and `sep` are `</s>`, `pad` is
    `<pad>`, `unk` is `<unk>` and `mask` is `<mask>` (each falls back to
    `<pad>`'s id when the vocabulary lacks it). Translation thus starts the
    decoder at `<s>` and stops at `</s>`, as keras-hub's `generate` does.

    Args:
        hub_tokenizer: a `keras_hub.models.BartTokenizer`.
    """
    vocabulary = getattr(hub_tokenizer, "vocabulary", None)
    merges = getattr(hub_tokenizer, "merges", None)
    if vocabulary is None or merges is None or type(hub_tokenizer).__name__ != "BartTokenizer":
        raise ValueError(
            "`tokenizer` must be a keras-hub BartTokenizer with its vocabulary and merges. "
            f"Received: {type(hub_tokenizer).__name__}"
        )
    vocabulary = dict(vocabulary)
    for role in ("bos", "pad", "eos"):
        if BART_SPECIAL_TOKENS[role] not in vocabulary:
            raise ValueError(
                f"A BART vocabulary must hold {BART_SPECIAL_TOKENS[role]!r} ({role}). "
                f"Received a vocabulary of {len(vocabulary)} tokens without it"
            )
    ids = {
        role: int(vocabulary.get(token, vocabulary["<pad>"]))
        for role, token in BART_SPECIAL_TOKENS.items()
    }
    ids["cls"], ids["sep"] = ids["bos"], ids["eos"]
    return BytePairTokenizer(
        vocabulary=vocabulary,
        merges=list(merges),
        special_token_ids=ids,
        unsplittable_tokens=list(hub_tokenizer.unsplittable_tokens or []),
        add_prefix_space=bool(hub_tokenizer.add_prefix_space),
    )


def _our_path(path):
    for theirs, ours in _PATH_PARTS:
        if theirs == "token_embedding/" and not path.startswith(theirs):
            continue
        path = path.replace(theirs, ours)
    return path


