"""Attention layers, positional encodings and Transformer blocks.

Every layer uses `keras.ops` only, is registered serializable under the
`keras_attn` package and round-trips through `.keras` files.
"""

from keras_attn.layers.alibi_bias import ALiBiBias
from keras_attn.layers.attention_mask import (
    causal_mask,
    merge_masks,
    padding_attention_mask,
    sliding_window_mask,
)
from keras_attn.layers.chunked_attention import chunked_attention
from keras_attn.layers.feed_forward import FeedForward
from keras_attn.layers.learned_position_embedding import LearnedPositionEmbedding
from keras_attn.layers.multi_head_attention import MultiHeadAttention
from keras_attn.layers.rotary_embedding import RotaryEmbedding
from keras_attn.layers.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_attn.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_attn.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_attn.layers.transformer_encoder_block import TransformerEncoderBlock

__all__ = [
    "ALiBiBias",
    "FeedForward",
    "LearnedPositionEmbedding",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "SinusoidalPositionEncoding",
    "TokenAndPositionEmbedding",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
    "causal_mask",
    "chunked_attention",
    "merge_masks",
    "padding_attention_mask",
    "sliding_window_mask",
]
