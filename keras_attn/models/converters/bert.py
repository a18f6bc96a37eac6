"""BERT and DistilBERT checkpoints from keras-hub: backbones, task heads and
the WordPiece tokenizer, with the same numbers."""

import keras
import keras_hub
import numpy as np

from keras_attn.models.converters.keras_hub_checkpoints import _from_preset
from keras_attn.models.encoder_backbone import EncoderBackbone
from keras_attn.tokenizers.word_piece_tokenizer import WordPieceTokenizer

# The keras-hub WordPiece tokenizer attribute holding the token of each
# keras-attn role. BERT has no start or end token: like keras-hub's
# `start_token` / `end_token`, "bos" is [CLS] and "eos" is [SEP].
_ROLE_ATTRIBUTES = {
    "pad": "pad_token",
    "unk": "oov_token",
    "bos": "cls_token",
    "eos": "sep_token",
    "sep": "sep_token",
    "cls": "cls_token",
    "mask": "mask_token",
}


def convert_bert_tokenizer(hub_tokenizer):
    """A `WordPieceTokenizer` giving the ids of a keras-hub `BertTokenizer`
    or `DistilBertTokenizer` (any keras-hub WordPiece tokenizer with
    `[CLS]`/`[SEP]`/`[PAD]`/`[MASK]` tokens).

    The vocabulary, lowercasing, accent stripping, CJK splitting, suffix
    indicator and special tokens (at the checkpoint's ids: `[PAD]`=0,
    `[UNK]`=100, `[CLS]`=101, `[SEP]`=102, `[MASK]`=103 in BERT's) carry
    over. `"bos"` is `[CLS]` and `"eos"` is `[SEP]`, so `detokenize` stops at
    the first `[SEP]`. One deliberate difference: a NUL character separates
    words here (keras-hub's splitting ends the text there).

    Raises:
        ValueError: naming the setting keras-attn cannot reproduce (no
            vocabulary, splitting off, a missing special token).
    """
    if not isinstance(hub_tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        raise ValueError(
            "`hub_tokenizer` must be a keras-hub WordPieceTokenizer (BertTokenizer, "
            f"DistilBertTokenizer). Received: a {type(hub_tokenizer).__name__}"
        )
    if hub_tokenizer.vocabulary is None:
        raise ValueError(
            "`hub_tokenizer` has no vocabulary: keras-attn needs the checkpoint's vocabulary. "
            "Received: a tokenizer with vocabulary=None"
        )
    if not hub_tokenizer.split:
        raise ValueError(
            "keras-attn WordPiece tokenizers split words on whitespace and punctuation. "
            "Received: a keras-hub tokenizer with split=False"
        )
    special_tokens = {}
    for role, attribute in _ROLE_ATTRIBUTES.items():
        token = getattr(hub_tokenizer, attribute, None)
        if token is None:
            raise ValueError(
                f"`hub_tokenizer` must have a `{attribute}` for the {role!r} role. Received: a "
                f"{type(hub_tokenizer).__name__} without one"
            )
        special_tokens[role] = token
    return WordPieceTokenizer(
        vocabulary=list(hub_tokenizer.vocabulary),
        lowercase=hub_tokenizer.lowercase,
        strip_accents=hub_tokenizer.strip_accents,
        split_on_cjk=hub_tokenizer.split_on_cjk,
        suffix_indicator=hub_tokenizer.suffix_indicator,
        special_tokens_in_strings=hub_tokenizer.special_tokens_in_strings,
        special_tokens=special_tokens,
    )


def convert_bert_backbone(hub_backbone, sequence_length=None):
    """An `EncoderBackbone` computing what a keras-hub `BertBackbone` does.

    Post-norm blocks, learned positions, segment embeddings, an embedding
    layer norm, tanh-approximated GELU, and the tanh pooler on `[CLS]`;
    every weight is copied (as float32 under the default dtype policy).

    Args:
        hub_backbone: a built `keras_hub.models.BertBackbone`.
        sequence_length: the converted model's longest input; default (and
            at most) the checkpoint's `max_sequence_length`. A shorter one
            keeps the first rows of the position table, so inputs that fit
            give the same numbers and every batch is padded less.

    Returns:
        An `EncoderBackbone`: `sequence_output` and `pooled_output` equal
        keras-hub's at the real (unpadded) positions.

    Raises:
        ValueError: naming a setting keras-attn cannot express (a block
            that is pre-norm, another activation, ...).
    """
    _check_class(hub_backbone, "BertBackbone")
    blocks = hub_backbone.transformer_layers
    backbone = EncoderBackbone(
        **_encoder_config(hub_backbone, blocks, sequence_length),
        num_segments=hub_backbone.num_segments,
        pooler_activation=_pooler_activation(hub_backbone.pooled_dense),
    )
    _copy_embeddings(
        hub_backbone.token_embedding, hub_backbone.position_embedding,
        hub_backbone.embeddings_layer_norm, backbone,
    )
    _copy(hub_backbone.segment_embedding, backbone.segment_embedding, "segment_embedding")
    _copy_blocks(blocks, backbone)
    _copy(hub_backbone.pooled_dense, backbone.pooler, "pooled_dense")
    return backbone


def convert_distil_bert_backbone(hub_backbone, sequence_length=None):
    """An `EncoderBackbone` computing what a keras-hub `DistilBertBackbone`
    does: as BERT without segment embeddings (`num_segments=0`), with exact
    GELU.

    DistilBERT has no pooler: its classifier puts a ReLU dense layer on the
    `[CLS]` position. The converted backbone's pooler is that layer
    (`pooler_activation="relu"`), new here, and copied by
    `copy_classifier_head` from a `DistilBertTextClassifier`.
    `sequence_output` equals keras-hub's backbone output at the real
    positions. Arguments and errors as `convert_bert_backbone`.
    """
    _check_class(hub_backbone, "DistilBertBackbone")
    blocks = hub_backbone.transformer_layers
    backbone = EncoderBackbone(
        **_encoder_config(hub_backbone, blocks, sequence_length),
        num_segments=0,
        pooler_activation="relu",
    )
    embeddings = hub_backbone.embeddings
    _copy_embeddings(
        embeddings.token_embedding, embeddings.position_embedding,
        hub_backbone.embeddings_layer_norm, backbone,
    )
    _copy_blocks(blocks, backbone)
    return backbone


def copy_classifier_head(hub_task, classifier):
    """Copies the head of a keras-hub `BertTextClassifier` /
    `DistilBertTextClassifier` into `classifier` (a keras-attn `Classifier`
    with the same `num_classes`, converted from that task's backbone).

    BERT's head is dropout + dense on the pooled output; DistilBERT's is a
    ReLU dense on `[CLS]` (copied into the backbone's pooler), dropout, and
    dense. Returns True when copied, False when `hub_task` is another model
    or has another number of classes (the head then stays new).
    """
    name = type(hub_task).__name__
    if name not in ("BertTextClassifier", "DistilBertTextClassifier"):
        return False
    if hub_task.num_classes != classifier.num_classes:
        return False
    if keras.activations.serialize(hub_task.activation) not in (None, "linear"):
        raise ValueError(
            "keras-attn classifiers return logits: the keras-hub classifier's `activation` "
            f"must be None. Received: activation={hub_task.activation!r}"
        )
    if name == "DistilBertTextClassifier":
        _copy(hub_task.pooled_dense, classifier.backbone.pooler, "pooled_dense")
    _copy(hub_task.output_dense, classifier.head, "output_dense")
    return True


def copy_masked_lm_head(hub_task, masked_lm):
    """Copies the head of a keras-hub `BertMaskedLM` / `DistilBertMaskedLM`
    (dense + GELU + layer norm, the tied token embedding, a bias) into
    `masked_lm` (a keras-attn `MaskedLanguageModel` converted from that
    task's backbone, with `head_norm_epsilon` equal to the head's
    `layer_norm_epsilon`). Returns True when copied, False for another model.
    """
    if type(hub_task).__name__ not in ("BertMaskedLM", "DistilBertMaskedLM"):
        return False
    head = hub_task.masked_lm_head
    if keras.activations.serialize(head.intermediate_activation) != "gelu":
        raise ValueError(
            "keras-attn's masked-LM head uses exact GELU. Received: a keras-hub head with "
            f"intermediate_activation={head.intermediate_activation!r}"
        )
    if keras.activations.serialize(head.activation) not in (None, "linear"):
        raise ValueError(
            "keras-attn's masked LM returns logits: the keras-hub head's `activation` must be "
            f"None. Received: activation={head.activation!r}"
        )
    if head.token_embedding is None:
        raise ValueError(
            "keras-attn's masked-LM head is tied to the token embedding. Received: a keras-hub "
            "head with its own output kernel (token_embedding=None)"
        )
    _copy(head._intermediate_dense, masked_lm.transform, "mlm_head.intermediate_dense")
    _copy(head._intermediate_layer_norm, masked_lm.transform_norm, "mlm_head.layer_norm")
    masked_lm.output_bias.assign(keras.ops.convert_to_numpy(head._bias).astype("float32"))
    return True


def load_masked_lm_preset(preset):
    """keras-hub's masked LM of `preset` (its backbone, head and tokenizer);
    a one-line `OSError` when keras-hub cannot load it (e.g. offline)."""
    return _from_preset(keras_hub.models.MaskedLM, preset, "masked LM")


def masked_lm_head_epsilon(hub_task):
    """The layer-norm epsilon of a keras-hub masked-LM head, or None."""
    head = getattr(hub_task, "masked_lm_head", None)
    return None if head is None else head.layer_norm_epsilon


def _check_class(hub_backbone, name):
    if type(hub_backbone).__name__ != name:
        raise ValueError(
            f"`hub_backbone` must be a keras-hub {name}. Received: a "
            f"{type(hub_backbone).__name__}"
        )


def _encoder_config(hub_backbone, blocks, sequence_length):
    """The `EncoderBackbone` arguments both families share, read from the
    keras-hub layers themselves (so a changed layer raises, not drifts)."""
    max_length = hub_backbone.max_sequence_length
    if sequence_length is None:
        sequence_length = max_length
    if (
        isinstance(sequence_length, bool)
        or not isinstance(sequence_length, (int, np.integer))
        or not 0 < sequence_length <= max_length
    ):
        raise ValueError(
            f"`sequence_length` must be an int in [1, {max_length}] (the checkpoint's "
            f"max_sequence_length). Received: sequence_length={sequence_length!r}"
        )
    epsilons = {hub_backbone.embeddings_layer_norm.epsilon}
    activations = set()
    for index, block in enumerate(blocks):
        where = f"transformer_layer_{index}"
        if block.normalize_first:
            raise ValueError(
                f"keras-attn converts post-norm BERT blocks. Received: {where} with "
                "normalize_first=True"
            )
        if block._self_attention_layer._key_dim * block.num_heads != hub_backbone.hidden_dim:
            raise ValueError(
                f"keras-attn needs num_heads to divide hidden_dim. Received: num_heads="
                f"{block.num_heads}, hidden_dim={hub_backbone.hidden_dim}"
            )
        epsilons.add(block.layer_norm_epsilon)
        activations.add(_activation_name(block.activation, where))
    if len(epsilons) != 1:
        raise ValueError(
            "keras-attn uses one layer-norm epsilon per encoder. Received: epsilons "
            f"{sorted(epsilons)}"
        )
    if len(activations) != 1:
        raise ValueError(
            "keras-attn uses one activation in every block. Received: activations "
            f"{sorted(activations)}"
        )
    return dict(
        vocabulary_size=hub_backbone.vocabulary_size,
        sequence_length=int(sequence_length),
        num_layers=hub_backbone.num_layers,
        num_heads=hub_backbone.num_heads,
        hidden_dim=hub_backbone.hidden_dim,
        intermediate_dim=hub_backbone.intermediate_dim,
        dropout=hub_backbone.dropout,
        activation=activations.pop(),
        normalization="layer_norm",
        norm_first=False,
        position_encoding="learned",
        norm_epsilon=epsilons.pop(),
    )


def _activation_name(activation, where):
    """The keras-attn name of a keras-hub feed-forward activation."""
    # keras-hub's BERT passes its own `gelu_approximate` function (tanh
    # GELU), DistilBERT the string "gelu" (Keras' exact GELU).
    if getattr(activation, "__name__", None) == "gelu_approximate":
        return "gelu_approximate"
    name = keras.activations.serialize(activation)
    if name in ("gelu", "relu"):
        return name
    raise ValueError(
        f"keras-attn's feed-forward activations are relu, gelu and gelu_approximate. "
        f"Received: {where} with activation={activation!r}"
    )


def _pooler_activation(dense):
    name = keras.activations.serialize(dense.activation)
    if name not in ("tanh", "relu"):
        raise ValueError(
            "keras-attn's pooler activation is tanh or relu. Received: pooled_dense with "
            f"activation={dense.activation!r}"
        )
    return name


def _copy_embeddings(token_embedding, position_embedding, norm, backbone):
    _copy(token_embedding, backbone.token_embedding, "token_embedding")
    positions = keras.ops.convert_to_numpy(position_embedding.position_embeddings)
    backbone.embedding.position_embedding.position_embeddings.assign(
        positions[: backbone.sequence_length].astype("float32")
    )
    _copy(norm, backbone.embedding_norm, "embeddings_layer_norm")


def _copy_blocks(hub_blocks, backbone):
    for index, (hub_block, block) in enumerate(zip(hub_blocks, backbone.blocks)):
        attention = hub_block._self_attention_layer
        where = f"transformer_layer_{index}"
        pairs = (
            (attention._query_dense, block.self_attention.query_dense, "query"),
            (attention._key_dense, block.self_attention.key_dense, "key"),
            (attention._value_dense, block.self_attention.value_dense, "value"),
            (attention._output_dense, block.self_attention.output_dense, "attention_output"),
            (hub_block._self_attention_layer_norm, block.self_attention_norm,
             "self_attention_layer_norm"),
            (hub_block._feedforward_layer_norm, block.feed_forward_norm,
             "feedforward_layer_norm"),
            (hub_block._feedforward_intermediate_dense, block.feed_forward.intermediate_dense,
             "feedforward_intermediate_dense"),
            (hub_block._feedforward_output_dense, block.feed_forward.output_dense,
             "feedforward_output_dense"),
        )
        for source, target, name in pairs:
            _copy(source, target, f"{where}.{name}")


def _copy(source, target, name):
    """Copies `source`'s weights into `target`, raising on any mismatch."""
    values = [keras.ops.convert_to_numpy(weight) for weight in source.weights]
    shapes = [tuple(value.shape) for value in values]
    expected = [tuple(weight.shape) for weight in target.weights]
    if shapes != expected:
        raise ValueError(
            f"keras-hub weights of {name} do not fit keras-attn's: shapes {shapes}, "
            f"expected {expected}"
        )
    for weight, value in zip(target.weights, values):
        weight.assign(value.astype(weight.dtype))
