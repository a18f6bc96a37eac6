"""What the three backbones share: a config made of their constructor
arguments, per-layer head counts, head masks, stacked attention scores and
token-embedding inputs."""

import numbers

import keras
from keras import ops

from keras_attn.layers.feed_forward import ACTIVATIONS
from keras_attn.layers.normalization import NORMALIZATIONS
from keras_attn.utils.arguments import (
    check_choice,
    check_ids_in_range,
    check_non_negative_int,
    check_positive_int,
    check_positive_number,
    check_rank,
    check_rate,
    check_same_batch,
)


def resolve_head_counts(name, num_heads, num_layers):
    """`num_heads` (an int, or one int per layer) as a list of `num_layers`
    positive ints."""
    if isinstance(num_heads, numbers.Integral) and not isinstance(num_heads, bool):
        return [check_positive_int(name, num_heads)] * num_layers
    if not isinstance(num_heads, (list, tuple)) or len(num_heads) != num_layers:
        raise ValueError(
            f"`{name}` must be a positive int or a list of {num_layers} positive ints (one "
            f"per layer). Received: {name}={num_heads!r}"
        )
    return [check_positive_int(f"{name}[{i}]", count) for i, count in enumerate(num_heads)]


def config_head_counts(num_heads):
    """The JSON form of a head-count argument kept in `get_config`."""
    if isinstance(num_heads, (list, tuple)):
        return [int(count) for count in num_heads]
    return int(num_heads)


def resolve_head_dim(head_dim, hidden_dim, head_counts):
    """The size of every attention head: `head_dim`, or by default
    `hidden_dim // max(head_counts)`, which must then divide evenly."""
    if head_dim is not None:
        return check_positive_int("head_dim", head_dim)
    widest = max(head_counts)
    if hidden_dim % widest:
        raise ValueError(
            "`hidden_dim` must be divisible by the (largest) `num_heads` when `head_dim` is "
            f"None. Received: hidden_dim={hidden_dim}, num_heads={widest}. Pass `head_dim` "
            "or change `num_heads`."
        )
    return hidden_dim // widest


def check_key_value_heads(num_key_value_heads, head_counts, name="num_heads"):
    """`num_key_value_heads` must divide every layer's head count."""
    if num_key_value_heads is None:
        return None
    num_key_value_heads = check_positive_int("num_key_value_heads", num_key_value_heads)
    for layer, count in enumerate(head_counts):
        if count % num_key_value_heads:
            raise ValueError(
                f"`num_key_value_heads` must divide the head count of every layer. Received: "
                f"num_key_value_heads={num_key_value_heads}, {name}={count} in layer {layer}"
            )
    return num_key_value_heads


def split_head_mask(name, head_mask, head_counts):
    """Checks a `(layers, max_heads)` head mask and returns one `(heads,)`
    slice per layer (entries past a layer's count are ignored), or a list of
    `None` when `head_mask` is `None`. Slicing keeps it differentiable."""
    if head_mask is None:
        return [None] * len(head_counts)
    head_mask = ops.convert_to_tensor(head_mask)
    expected = (len(head_counts), max(head_counts))
    if tuple(head_mask.shape) != expected:
        raise ValueError(
            f"`{name}` must have shape (layers, heads) = {expected}: one row per layer, one "
            "column per head of the layer with the most heads. Received: "
            f"{name} with shape {tuple(head_mask.shape)}"
        )
    return [head_mask[layer, :count] for layer, count in enumerate(head_counts)]


def split_attention_multiplier(name, multiplier, head_counts):
    """Checks a `(layers, batch, max_heads, queries, keys)` attention
    multiplier and returns one `(batch, heads, queries, keys)` slice per layer
    (heads past a layer's count are ignored), or a list of `None` when
    `multiplier` is `None`. Batch, query and key axes may be 1 (broadcast).
    Slicing keeps it differentiable."""
    if multiplier is None:
        return [None] * len(head_counts)
    multiplier = ops.convert_to_tensor(multiplier)
    shape = tuple(multiplier.shape)
    if len(shape) != 5 or shape[0] != len(head_counts) or shape[2] not in (1, max(head_counts)):
        raise ValueError(
            f"`{name}` must have shape (layers={len(head_counts)}, batch, heads="
            f"{max(head_counts)}, queries, keys): one slice per layer, one row per head of "
            f"the layer with the most heads. Received: {name} with shape {shape}"
        )
    if shape[2] == 1:
        return [multiplier[layer] for layer in range(len(head_counts))]
    return [multiplier[layer, :, :count] for layer, count in enumerate(head_counts)]


def run_blocks(
    blocks, x, head_masks, return_attention_scores, training, multipliers=None,
    block_inputs=None, **block_kwargs,
):
    """`x` through each block with its head mask (and attention multiplier);
    returns `(x, scores)`, the blocks' attention scores in order (empty
    unless requested). Each block's input is appended to `block_inputs` when
    a list is given."""
    scores = []
    multipliers = multipliers or [None] * len(blocks)
    for block, block_head_mask, multiplier in zip(blocks, head_masks, multipliers):
        if block_inputs is not None:
            block_inputs.append(x)
        extra = {} if multiplier is None else {"attention_multiplier": multiplier}
        x = block(
            x,
            head_mask=block_head_mask,
            return_attention_scores=return_attention_scores,
            training=training,
            **extra,
            **block_kwargs,
        )
        if return_attention_scores:
            x, block_scores = x
            scores.append(block_scores)
    return x, scores


def stack_attention_scores(scores, max_heads):
    """Stacks per-layer `(batch, heads_i, query, key)` weights into
    `(layers, batch, max_heads, query, key)`, a layer's missing heads being
    rows of zeros."""
    padded = [
        s if s.shape[1] == max_heads else ops.pad(s, [(0, 0), (0, max_heads - s.shape[1]),
                                                       (0, 0), (0, 0)])
        for s in scores
    ]
    return ops.stack(padded, axis=0)


class Backbone(keras.Model):
    """Base of `DecoderBackbone`, `EncoderBackbone` and `Seq2SeqBackbone`.

    Subclasses list their constructor arguments in `config_keys` and keep
    each as an attribute of the same name; `get_config` returns them, so
    `from_config(get_config())` rebuilds the same architecture.
    """

    config_keys = ()

    def _set_block_arguments(
        self, hidden_dim, intermediate_dim, dropout, activation, normalization, norm_epsilon,
    ):
        """Checks and stores the arguments every backbone hands to its blocks
        (head counts and sizes are resolved by each backbone)."""
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.dropout = check_rate("dropout", dropout)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.normalization = check_choice("normalization", normalization, NORMALIZATIONS)
        self.norm_epsilon = check_positive_number("norm_epsilon", norm_epsilon)

    def _set_pad_token_id(self, pad_token_id, vocabulary_size):
        """Checks and stores `pad_token_id`: the id whose positions the
        default padding mask drops, or `None` (every position is real unless
        a `padding_mask` says otherwise, e.g. GPT-2, which has no padding
        token)."""
        pad_token_id = check_non_negative_int("pad_token_id", pad_token_id, allow_none=True)
        if pad_token_id is not None and pad_token_id >= vocabulary_size:
            raise ValueError(
                f"`pad_token_id` must be None or an id below the vocabulary size "
                f"({vocabulary_size}). Received: pad_token_id={pad_token_id}"
            )
        self.pad_token_id = pad_token_id

    def default_padding_mask(self, token_ids):
        """Bool `(batch, time)`: `token_ids != pad_token_id`, or `None`
        (all real) when the backbone has no padding id."""
        if self.pad_token_id is None:
            return None
        return ops.not_equal(token_ids, self.pad_token_id)

    def query_mask(self, token_ids):
        """The cached-decoding query mask of new `token_ids`: real unless
        they are the padding id (all real without one)."""
        mask = self.default_padding_mask(token_ids)
        return ops.ones_like(token_ids, "bool") if mask is None else mask

    def _block_kwargs(self, norm_first, num_heads, **extra):
        """The arguments a block of this backbone is built with; dropout
        applies to residual branches and attention weights alike."""
        return dict(
            num_heads=num_heads,
            key_dim=self.head_dim,
            intermediate_dim=self.intermediate_dim,
            dropout=self.dropout,
            attention_dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
            norm_first=norm_first,
            norm_epsilon=self.norm_epsilon,
            dtype=self.dtype_policy,
            **extra,
        )

    def _token_inputs(self, inputs, ids_key, embeddings_key, mask_key, token_embedding,
                      allowed=()):
        """Reads `inputs` (ids, or a dict of ids or token embeddings plus an
        optional padding mask) as `(token_embeddings, padding_mask, token_ids)`.

        `token_ids` is `None` for embedding inputs; `padding_mask` defaults to
        `token_ids != pad_token_id` for ids (`None`, all real, when the
        backbone has no `pad_token_id`) and to `None` for embeddings.

        Ids must lie in `[0, vocabulary size)` and the padding mask must
        have the inputs' batch size: checked when the values are known
        (eager calls), raising a `ValueError` naming `ids_key`. Traced calls
        (`fit`, `predict`, compiled decoding, exports) skip the value check,
        so a training step costs nothing more; there an out-of-range id
        reaches the embedding lookup unchecked (TensorFlow's gather on CPU
        fails for ids >= the vocabulary size, negative ids or XLA devices
        read another row), so feed traced calls ids from the model's
        tokenizer or preprocessor.
        """
        if not isinstance(inputs, dict):
            inputs = {ids_key: inputs}
        unknown = sorted(set(inputs) - {ids_key, embeddings_key, mask_key, *allowed})
        if unknown:
            raise ValueError(
                f"Unexpected input key(s) {unknown}. Expected `{ids_key}` or "
                f"`{embeddings_key}`, optionally `{mask_key}`"
                + "".join(f", `{key}`" for key in allowed)
            )
        token_ids, embeddings = inputs.get(ids_key), inputs.get(embeddings_key)
        if (token_ids is None) == (embeddings is None):
            raise ValueError(
                f"Pass exactly one of `{ids_key}` and `{embeddings_key}`. Received: "
                f"{'both' if token_ids is not None else 'neither'}"
            )
        padding_mask = inputs.get(mask_key)
        if token_ids is not None:
            token_ids = ops.convert_to_tensor(token_ids)
            check_rank(ids_key, token_ids.shape, 2, "(batch, time)")
            check_ids_in_range(ids_key, token_ids, token_embedding.input_dim)
            embeddings = token_embedding(token_ids)
            if padding_mask is None:
                padding_mask = self.default_padding_mask(token_ids)
        else:
            embeddings = ops.convert_to_tensor(embeddings)
            check_rank(embeddings_key, embeddings.shape, 3, "(batch, time, hidden_dim)")
            if embeddings.shape[-1] not in (None, self.hidden_dim):
                raise ValueError(
                    f"`{embeddings_key}` must have shape (batch, time, hidden_dim="
                    f"{self.hidden_dim}). Received: shape {tuple(embeddings.shape)}"
                )
        if padding_mask is not None:
            padding_mask = ops.convert_to_tensor(padding_mask)
            check_rank(mask_key, padding_mask.shape, 2, "(batch, time)")
            check_same_batch([
                (ids_key if token_ids is not None else embeddings_key, embeddings.shape),
                (mask_key, padding_mask.shape),
            ])
            if padding_mask.shape[1] not in (None, embeddings.shape[1]):
                raise ValueError(
                    f"`{mask_key}` must have shape (batch, {embeddings.shape[1]}), one entry "
                    f"per token. Received: shape {tuple(padding_mask.shape)}"
                )
            padding_mask = ops.cast(padding_mask, "bool")
        return embeddings, padding_mask, token_ids

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        config.update({key: getattr(self, key) for key in self.config_keys})
        return config
