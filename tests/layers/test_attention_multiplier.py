"""`attention_multiplier`: a factor on the post-softmax weights of
MultiHeadAttention and the blocks, whose gradient is `A * dL/dA`."""

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.layers import TransformerDecoderBlock, TransformerEncoderBlock
from keras_attn.layers.multi_head_attention import MultiHeadAttention

B, T, S, D = 2, 5, 4, 16


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _np(x):
    return ops.convert_to_numpy(x)


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_ones_change_nothing_and_zeros_remove_a_head_like_head_mask(kv_heads):
    layer = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=kv_heads)
    query, value = _rand(B, T, D), _rand(B, S, D, seed=1)
    plain = _np(layer(query, value))  # the fused path
    ones = _np(layer(query, value, attention_multiplier=np.ones((B, 4, T, S), "float32")))
    np.testing.assert_allclose(ones, plain, atol=1e-5)
    # Zero weights on head 2 give head 2 a zero context, as a zero head mask does.
    multiplier = np.ones((1, 4, 1, 1), "float32")
    multiplier[0, 2] = 0.0
    removed = _np(layer(query, value, attention_multiplier=multiplier))
    masked = _np(layer(query, value, head_mask=np.array([1, 1, 0, 1], "float32")))
    np.testing.assert_allclose(removed, masked, atol=1e-5)
    assert np.abs(removed - plain).max() > 1e-3


def test_scores_are_the_weights_before_the_multiplier_and_a_factor_scales_the_context():
    layer = MultiHeadAttention(num_heads=2, key_dim=4, use_bias=False)
    x = _rand(B, T, D)
    _, scores = layer(x, x, return_attention_scores=True)
    doubled, doubled_scores = layer(
        x, x, attention_multiplier=2.0 * np.ones((1, 1, 1, 1), "float32"),
        return_attention_scores=True,
    )
    np.testing.assert_allclose(_np(doubled_scores), _np(scores), atol=1e-6)
    # Without biases the output is linear in the context: twice the weights,
    # twice the output.
    np.testing.assert_allclose(_np(doubled), 2 * _np(layer(x, x)), atol=1e-5)


def test_gradient_at_ones_is_attention_times_gradient_of_the_weights():
    # d/dm f(m * A) at m = 1 is A * f'(A). Check it against a central finite
    # difference on one entry: f(A + eps A_ij e_ij) - f(A - eps A_ij e_ij).
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    x = _rand(1, T, D)
    weights = _rand(1, T, D, seed=3)
    ones = tf.ones((1, 2, T, T))

    def loss(m):
        return tf.reduce_sum(layer(x, x, attention_multiplier=m) * weights)

    with tf.GradientTape() as tape:
        tape.watch(ones)
        value = loss(ones)
    gradient = _np(tape.gradient(value, ones))
    eps = 1e-2
    bump = np.zeros((1, 2, T, T), "float32")
    bump[0, 1, 3, 2] = eps
    numeric = (_np(loss(ones + bump)) - _np(loss(ones - bump))) / (2 * eps)
    np.testing.assert_allclose(gradient[0, 1, 3, 2], numeric, rtol=1e-2, atol=1e-4)


def test_bad_multiplier_shape_is_named():
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    x = _rand(B, T, D)
    with pytest.raises(ValueError, match="attention_multiplier"):
        layer(x, x, attention_multiplier=np.ones((B, 3, T, T), "float32"))


def test_blocks_thread_the_multipliers():
    x, source = _rand(B, T, D), _rand(B, S, D, seed=2)
    encoder = TransformerEncoderBlock(num_heads=2, intermediate_dim=32)
    plain = _np(encoder(x))
    np.testing.assert_allclose(
        _np(encoder(x, attention_multiplier=np.ones((B, 2, T, T), "float32"))), plain, atol=1e-5
    )
    removed = _np(encoder(x, attention_multiplier=np.array([1, 0], "float32")[:, None, None]))
    masked = _np(encoder(x, head_mask=np.array([1, 0], "float32")))
    np.testing.assert_allclose(removed, masked, atol=1e-5)

    decoder = TransformerDecoderBlock(num_heads=2, intermediate_dim=32, use_cross_attention=True)
    plain = _np(decoder(x, source))
    removed = _np(decoder(
        x, source, cross_attention_multiplier=np.array([0, 1], "float32")[:, None, None]
    ))
    masked = _np(decoder(x, source, cross_head_mask=np.array([0, 1], "float32")))
    np.testing.assert_allclose(removed, masked, atol=1e-5)
    self_removed = _np(decoder(
        x, source, attention_multiplier=np.array([1, 0], "float32")[:, None, None]
    ))
    self_masked = _np(decoder(x, source, head_mask=np.array([1, 0], "float32")))
    np.testing.assert_allclose(self_removed, self_masked, atol=1e-5)
    assert np.abs(removed - plain).max() > 1e-3
