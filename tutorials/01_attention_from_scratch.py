"""Tutorial 1: attention from scratch.

Queries, keys and values; scaled dot products; softmax; padding and causal
masks -- computed by hand in NumPy, then the same numbers from
`keras_attn.layers.MultiHeadAttention` with the same weights.

Run: python tutorials/01_attention_from_scratch.py --out tutorial_output/01
"""

import numpy as np
from common import heatmap, parse_args, save
from matplotlib import pyplot as plt

from keras_attn.layers import MultiHeadAttention

args = parse_args(__doc__.splitlines()[0], "tutorial_output/01")
rng = np.random.default_rng(0)

# --- 1. Tokens as vectors ------------------------------------------------
# A model never sees words, only one vector per token. We make up vectors
# of width 8 for a six-token sentence; in a trained model they come from the
# embedding table.
tokens = ["the", "cat", "sat", "on", "the", "mat"]
width = 8
x = rng.normal(size=(len(tokens), width)).astype("float32")

# --- 2. Queries, keys and values ------------------------------------------
# Attention lets every token look at every other token. Each token asks a
# question (its query), advertises what it holds (its key), and offers
# content (its value). All three are linear maps of the same vector.
w_query, w_key, w_value = (
    rng.normal(scale=width**-0.5, size=(width, width)).astype("float32") for _ in range(3)
)
queries, keys, values = x @ w_query, x @ w_key, x @ w_value

# --- 3. Scaled dot products and softmax -----------------------------------
# How well query i matches key j is their dot product. Dividing by
# sqrt(width) keeps the scores' spread independent of the width, so softmax
# does not saturate as models grow.
scores = queries @ keys.T / np.sqrt(width)


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)  # same result, no overflow
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


weights = softmax(scores)  # each row: how query i spreads its attention
print("every row sums to one:", np.allclose(weights.sum(axis=-1), 1.0))
output = weights @ values  # each token becomes a weighted mix of values

# --- 4. Padding masks -------------------------------------------------------
# Batches hold sentences of different lengths, padded to the longest. A
# padding token must never be attended to: its score becomes -infinity
# before the softmax, so its weight is exactly zero.
real = np.array([True, True, True, False, False, False])  # "the cat sat" + 3 pads
padded_scores = np.where(real[None, :], scores, -np.inf)
padded_weights = softmax(padded_scores)
print("weight on padding:", float(padded_weights[:, ~real].sum()))

# --- 5. Causal masks ---------------------------------------------------------
# A generator predicts token t+1 from tokens up to t, so during training
# token t must not see the future: query i may only attend to keys j <= i.
causal = np.tril(np.ones((len(tokens), len(tokens)), bool))
causal_weights = softmax(np.where(causal, scores, -np.inf))
print("weight on the future:", float(causal_weights[~causal].sum()))

# --- 6. The same numbers from keras-attn ------------------------------------
# MultiHeadAttention with one head of width 8 holds exactly these matrices
# (plus biases, which we set to zero). Its kernels are laid out
# (features, heads, head_dim) like Keras' own layer.
layer = MultiHeadAttention(num_heads=1, key_dim=width)
batch = x[None]  # (batch=1, time, features)
layer(batch, batch)  # builds the weights
layer.set_weights([
    w_query[:, None, :], np.zeros((1, width)),
    w_key[:, None, :], np.zeros((1, width)),
    w_value[:, None, :], np.zeros((1, width)),
    np.eye(width, dtype="float32")[None], np.zeros(width),  # output: identity
])
for name, kwargs, by_hand in [
    ("no mask", {}, weights),
    ("padding mask", {"value_mask": real[None]}, padded_weights),
    ("causal mask", {"use_causal_mask": True}, causal_weights),
]:
    out, layer_weights = layer(batch, batch, return_attention_scores=True, **kwargs)
    difference = np.abs(np.asarray(layer_weights)[0, 0] - by_hand).max()
    print(f"{name:13s} largest difference from NumPy: {difference:.2e}")
    assert difference < 1e-5
difference = np.abs(np.asarray(layer(batch, batch))[0] - output).max()
print(f"outputs       largest difference from NumPy: {difference:.2e}")
assert difference < 1e-5

# --- 7. Pictures ------------------------------------------------------------
figure, axes = plt.subplots(1, 3, figsize=(13, 4.5))
heatmap(axes[0], weights, tokens, tokens, "attention")
heatmap(axes[1], padded_weights, tokens[:3] + ["[PAD]"] * 3, tokens[:3] + ["[PAD]"] * 3,
        "with a padding mask")
heatmap(axes[2], causal_weights, tokens, tokens, "with a causal mask")
save(figure, args.out, "attention_weights.png")
