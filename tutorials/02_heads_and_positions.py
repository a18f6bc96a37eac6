"""Tutorial 2: multi-head attention and positions.

Several heads attend in parallel, each in its own subspace. Attention by
itself ignores word order, so models add positions: sinusoidal or learned
vectors added to the tokens, rotary angles applied to queries and keys, or
ALiBi's distance penalty added to the scores. This script draws each.

Run: python tutorials/02_heads_and_positions.py --out tutorial_output/02
"""

import numpy as np
from common import heatmap, parse_args, save
from matplotlib import pyplot as plt

from keras_attn.layers import (
    ALiBiBias,
    LearnedPositionEmbedding,
    MultiHeadAttention,
    RotaryEmbedding,
    SinusoidalPositionEncoding,
)

args = parse_args(__doc__.splitlines()[0], "tutorial_output/02")
rng = np.random.default_rng(0)
length = 32 if args.quick else 64
width = 32

# --- 1. Attention ignores order --------------------------------------------
# Shuffle the tokens and the outputs shuffle the same way: without
# positions, "dog bites man" and "man bites dog" look alike.
layer = MultiHeadAttention(num_heads=4, key_dim=width // 4)
x = rng.normal(size=(1, 6, width)).astype("float32")
order = np.array([2, 0, 1, 5, 3, 4])
out = np.asarray(layer(x, x))
out_shuffled = np.asarray(layer(x[:, order], x[:, order]))
print("permuting the input permutes the output:", np.allclose(out[:, order], out_shuffled,
                                                              atol=1e-5))

# --- 2. Several heads ----------------------------------------------------------
# num_heads=4 with key_dim=8 projects each token into four 8-wide subspaces
# and runs four attentions side by side; their outputs are concatenated and
# mixed by one output projection. Each head can learn its own pattern.
tokens = ["the", "cat", "sat", "on", "the", "mat"]
_, scores = layer(x, x, return_attention_scores=True)  # (batch, heads, T, T)
figure, axes = plt.subplots(1, 4, figsize=(16, 4))
for head, ax in enumerate(axes):
    heatmap(ax, np.asarray(scores)[0, head], tokens, tokens, f"head {head}")
save(figure, args.out, "heads.png")

# --- 3. Sinusoidal positions (Vaswani et al. 2017) -----------------------------
# Each position gets sines and cosines at geometrically spaced frequencies.
# The dot product between two positions' vectors depends only on their
# distance, which is what lets attention reason about relative order.
encoding = np.asarray(SinusoidalPositionEncoding()(np.zeros((1, length, width), "float32")))[0]
similarity = encoding @ encoding.T
figure, axes = plt.subplots(1, 2, figsize=(11, 4))
axes[0].imshow(encoding.T, aspect="auto", cmap="RdBu")
axes[0].set(title="sinusoidal encoding", xlabel="position", ylabel="dimension")
axes[1].imshow(similarity, cmap="viridis")
axes[1].set(title="dot product between positions", xlabel="position", ylabel="position")
save(figure, args.out, "sinusoidal.png")
row = similarity[length // 2]
print("similarity falls off with distance:",
      bool(row[length // 2] > row[length // 2 + 4] and row[length // 2] > row[length // 2 - 4]))

# --- 4. Learned positions (GPT-2, BERT) ------------------------------------------
# A trainable table, one vector per position up to a maximum length. It
# starts random (below) and learns whatever structure helps; it cannot go
# past the longest position it was built for.
learned = LearnedPositionEmbedding(sequence_length=length)
table = np.asarray(learned(np.zeros((1, length, width), "float32")))[0]
figure, ax = plt.subplots(figsize=(6, 4))
ax.imshow(table.T, aspect="auto", cmap="RdBu")
ax.set(title="learned position table (untrained)", xlabel="position", ylabel="dimension")
save(figure, args.out, "learned.png")

# --- 5. Rotary positions (Su et al. 2021) ----------------------------------------
# RoPE rotates each pair of query/key dimensions by an angle proportional to
# the position. A query at position m and a key at position n then score
# q·k rotated by (m - n): the score depends on the offset only. We place the
# same query and key at every pair of positions and look at the scores.
rotary = RotaryEmbedding()
head_dim = 16
q = rng.normal(size=(head_dim,)).astype("float32")
k = rng.normal(size=(head_dim,)).astype("float32")
# (batch=1, time, heads=1, head_dim): the same vector at every position.
q_rotated = np.asarray(rotary(np.tile(q, (1, length, 1, 1))))[0, :, 0]
k_rotated = np.asarray(rotary(np.tile(k, (1, length, 1, 1))))[0, :, 0]
rotary_scores = q_rotated @ k_rotated.T
offsets_equal = np.allclose(np.diag(rotary_scores, 3), np.diag(rotary_scores, 3)[0], atol=1e-4)
print("rotary scores depend only on the offset:", offsets_equal)
figure, ax = plt.subplots(figsize=(5, 4))
ax.imshow(rotary_scores, cmap="RdBu")
ax.set(title="q·k with rotary positions", xlabel="key position", ylabel="query position")
save(figure, args.out, "rotary.png")

# --- 6. ALiBi (Press et al. 2022) ---------------------------------------------------
# No position vectors at all: each head adds -slope × distance to its scores,
# with a different slope per head, so some heads look far and others near.
alibi = ALiBiBias(num_heads=4)
bias = np.asarray(alibi(np.zeros((1, length, width), "float32")))[0]  # (heads, T, T)
print("ALiBi slopes per head:", [round(float(s), 4) for s in alibi.slopes])
figure, axes = plt.subplots(1, 4, figsize=(16, 4))
for head, ax in enumerate(axes):
    # One colour scale for all heads, so the slopes can be compared.
    ax.imshow(bias[head], cmap="magma", vmin=float(bias.min()), vmax=0.0)
    ax.set(title=f"ALiBi bias, head {head}", xlabel="key", ylabel="query")
save(figure, args.out, "alibi.png")
