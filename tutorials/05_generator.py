"""Tutorial 5: a generator -- sampling strategies, temperature, and what the
key/value cache buys.

A GPT-style `Generator` learns runs of consecutive letters ("defgh"), then
continues prompts with greedy decoding, temperature, top-k and top-p
sampling. Last, it measures the cached decoding loop against recomputing the
whole sequence for every new token.

Run: python tutorials/05_generator.py --out tutorial_output/05
"""

import time

import keras
import numpy as np
import tensorflow as tf
from common import parse_args, save
from matplotlib import pyplot as plt

from keras_attn.data import alphabet_runs
from keras_attn.models import Generator

args = parse_args(__doc__.splitlines()[0], "tutorial_output/05")
keras.utils.set_random_seed(0)

# --- 1. Train a small generator ------------------------------------------
# Byte-level tokens, 16 positions. `make_dataset` turns each text into
# [BOS] text [EOS] and next-token targets; `compile()` brings the task's own
# loss (padding ignored), metrics and XLA.
generator = Generator.from_preset("tiny", sequence_length=16)
generator.compile(optimizer=keras.optimizers.Adam(3e-3))
texts = alphabet_runs(600 if args.quick else 3000, seed=0)
history = generator.fit(generator.make_dataset(texts, batch_size=64), epochs=2 if args.quick else 4,
                        verbose=0)
print("loss by epoch:", [round(value, 3) for value in history.history["loss"]])

# --- 2. The next-token distribution and temperature ----------------------
# The model gives logits for the next token; softmax(logits / T) is what
# sampling draws from. T < 1 sharpens it towards the likeliest token, T > 1
# flattens it; T = 0 means greedy (always the likeliest).
batch = generator.texts_to_inputs(["klm"])
logits = np.asarray(generator(batch.inputs["token_ids"]))[0, -1]
letters = list("abcdefghijklmnopqrstuvwxyz")
letter_ids = [generator.tokenizer.token_to_id(letter) for letter in letters]
figure, ax = plt.subplots(figsize=(10, 3.5))
for offset, temperature in zip((-0.25, 0.0, 0.25), (0.5, 1.0, 2.0)):
    scaled = logits / temperature
    probabilities = np.exp(scaled - scaled.max())
    probabilities /= probabilities.sum()
    ax.bar(np.arange(26) + offset, probabilities[letter_ids], width=0.25,
           label=f"temperature {temperature}")
ax.set_xticks(range(26), letters)
ax.set(title="next letter after 'klm'", ylabel="probability")
ax.legend()
save(figure, args.out, "temperature.png")

# --- 3. Decoding strategies ------------------------------------------------
# Greedy is deterministic; sampling with a seed is reproducible. top_k keeps
# the k likeliest tokens; top_p keeps the smallest set whose probability
# reaches p (nucleus sampling).
prompt = "fgh"
for name, options in [
    ("greedy", {}),
    ("temperature 1.5", {"temperature": 1.5, "seed": 1}),
    ("top_k=3", {"temperature": 1.0, "top_k": 3, "seed": 1}),
    ("top_p=0.9", {"temperature": 1.0, "top_p": 0.9, "seed": 1}),
]:
    print(f"{name:16s} {prompt!r} -> {generator.generate(prompt, 6, **options)!r}")

# --- 4. What the cache buys --------------------------------------------------
# Without a cache, every new token re-runs the model over the whole sequence
# so far: generating n tokens costs O(n^2) positions. With a key/value cache,
# each step runs one position and reads the keys and values stored by the
# earlier steps. Speed does not depend on the weights, so an untrained
# model with a longer context shows the difference.
length = 64 if args.quick else 256
model = Generator.from_preset("tiny", sequence_length=length)
new_tokens = length - 8
prompt_ids = np.zeros((1, length), "int32")
prompt_ids[0, :8] = generator.tokenizer.bos_id
prompt_mask = prompt_ids != 0


@tf.function(jit_compile=True)
def next_token_without_cache(ids, index):
    # The whole buffer through the model, to read one position's logits.
    logits = model(ids)
    return tf.argmax(logits[:, index], axis=-1, output_type=tf.int32)


def generate_without_cache(ids):
    ids = tf.constant(ids)
    for index in range(7, 7 + new_tokens):
        token = next_token_without_cache(ids, tf.constant(index))  # a tensor: one trace
        ids = tf.tensor_scatter_nd_update(ids, [[0, index + 1]], token)
    return ids


def seconds(function):
    function()  # compile first; time the second run
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


cached = seconds(lambda: model.generate_ids(prompt_ids, prompt_mask))
uncached = seconds(lambda: generate_without_cache(prompt_ids))
print(f"{new_tokens} new tokens: cached loop {cached:.3f} s, "
      f"re-running the full sequence {uncached:.3f} s ({uncached / cached:.1f}x slower)")
same = np.array_equal(np.asarray(model.generate_ids(prompt_ids, prompt_mask))[0, : length - 1],
                      np.asarray(generate_without_cache(prompt_ids))[0, : length - 1])
print("both give the same tokens:", same)
figure, ax = plt.subplots(figsize=(5, 3.5))
ax.bar(["key/value cache", "no cache"], [cached, uncached], color=["tab:green", "tab:red"])
ax.set(title=f"greedy decoding, {new_tokens} new tokens", ylabel="seconds")
save(figure, args.out, "cache_speedup.png")
