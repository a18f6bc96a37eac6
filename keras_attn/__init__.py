"""keras-attn: attention layers and Transformer models for Keras 3.

The layer library lives in `keras_attn.layers`; its public classes are also
available at the top level, e.g. `keras_attn.MultiHeadAttention`.
"""

from keras_attn import layers
from keras_attn.layers import (
    ALiBiBias,
    FeedForward,
    LearnedPositionEmbedding,
    MultiHeadAttention,
    RotaryEmbedding,
    SinusoidalPositionEncoding,
    TokenAndPositionEmbedding,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
)
from keras_attn.version import __version__

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
    "__version__",
    "layers",
]
