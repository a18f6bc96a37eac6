"""The quickstart: two tiny end-to-end runs of the layer library on data
generated on the fly (no download).

1. An encoder classifier (token + position embedding, Transformer encoder
   blocks, first-position pooling) learns whether the first token of a padded
   sequence appears again later in it, a task that needs attention.
2. A causal decoder language model learns to copy a sequence after a
   separator; it then decodes greedily twice, re-running the full causal pass
   for every token and with the per-block key/value caches, and checks that
   both give the same tokens.
"""

import time

import keras
import numpy as np
from keras import ops

from keras_attn.layers import (
    TokenAndPositionEmbedding,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
)

PAD = 0


def first_token_repeats_data(num_examples, length=12, vocabulary_size=16, seed=0):
    """Padded token sequences labelled 1 if the first token occurs again.

    Tokens are drawn from `1 .. vocabulary_size - 1`; lengths are uniform in
    `[length // 2, length]`; half of the examples are positive.
    """
    rng = np.random.default_rng(seed)
    tokens = np.full((num_examples, length), PAD, "int32")
    labels = rng.integers(0, 2, num_examples).astype("int32")
    for row in range(num_examples):
        size = rng.integers(length // 2, length + 1)
        first = rng.integers(1, vocabulary_size)
        others = [t for t in range(1, vocabulary_size) if t != first]
        rest = rng.choice(others, size - 1)
        if labels[row]:
            rest[rng.integers(0, size - 1)] = first
        tokens[row, 0] = first
        tokens[row, 1:size] = rest
    return tokens, labels


def copy_task_data(num_examples, span=5, vocabulary_size=12, seed=0):
    """Sequences `x_1..x_span SEP x_1..x_span` for a causal LM.

    Token `vocabulary_size - 1` is the separator. Returns `(inputs, targets)`
    shifted by one, and a loss weight that is 1 on the copied half only.
    """
    rng = np.random.default_rng(seed)
    separator = vocabulary_size - 1
    source = rng.integers(1, separator, (num_examples, span)).astype("int32")
    sequence = np.concatenate([source, np.full((num_examples, 1), separator), source], axis=1)
    weights = np.zeros((num_examples, 2 * span), "float32")
    weights[:, span:] = 1.0
    return sequence[:, :-1], sequence[:, 1:], weights


def build_classifier(vocabulary_size, length, hidden_dim=32, num_layers=2):
    tokens = keras.Input((length,), dtype="int32", name="token_ids")
    x = TokenAndPositionEmbedding(vocabulary_size, length, hidden_dim)(tokens)
    for _ in range(num_layers):
        x = TransformerEncoderBlock(num_heads=4, intermediate_dim=2 * hidden_dim)(x)
    logits = keras.layers.Dense(2)(x[:, 0])
    return keras.Model(tokens, logits, name="tiny_encoder_classifier")


class CopyLanguageModel(keras.Model):
    """A tiny causal decoder that can run a full pass or one cached step."""

    def __init__(self, vocabulary_size, length, hidden_dim=32, num_layers=2, **kwargs):
        super().__init__(**kwargs)
        self.embedding = TokenAndPositionEmbedding(vocabulary_size, length, hidden_dim)
        self.blocks = [
            TransformerDecoderBlock(num_heads=4, intermediate_dim=2 * hidden_dim)
            for _ in range(num_layers)
        ]
        self.head = keras.layers.Dense(vocabulary_size)

    def call(self, token_ids):
        x = self.embedding(token_ids)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def step(self, token_ids, caches, index):
        """Logits for `token_ids` written at `index`; returns updated caches."""
        x = self.embedding(token_ids, start_index=index)
        new_caches = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block(
                x, self_attention_cache=cache, self_attention_cache_update_index=index
            )
            new_caches.append(cache)
        return self.head(x), new_caches


def greedy_copy(model, prompts, total_length, use_cache):
    """Greedily extends `prompts` to `total_length` tokens."""
    tokens = np.asarray(prompts)
    # The last token is predicted from the one before it: the model never
    # needs to read more than `total_length - 1` positions.
    context = total_length - 1
    if not use_cache:
        while tokens.shape[1] < total_length:
            padded = np.pad(tokens, ((0, 0), (0, context - tokens.shape[1])))
            logits = ops.convert_to_numpy(model(padded))
            next_token = logits[:, tokens.shape[1] - 1].argmax(-1)
            tokens = np.concatenate([tokens, next_token[:, None]], axis=1)
        return tokens
    batch = tokens.shape[0]
    caches = [b.self_attention.empty_cache(batch, context) for b in model.blocks]
    logits, caches = model.step(tokens, caches, 0)
    while tokens.shape[1] < total_length:
        next_token = ops.convert_to_numpy(logits[:, -1]).argmax(-1).astype("int32")
        tokens = np.concatenate([tokens, next_token[:, None]], axis=1)
        if tokens.shape[1] == total_length:
            break
        logits, caches = model.step(next_token[:, None], caches, tokens.shape[1] - 1)
    return tokens


def run_quickstart(fast=False, seed=0, log=print):
    """Trains both demos and returns their metrics as a dict.

    Args:
        fast: a smaller, shorter run (for tests and CI).
        seed: seed for data and weights.
        log: where progress lines go.
    """
    keras.utils.set_random_seed(seed)
    metrics = {}
    verbose = 0 if fast else 2

    started = time.perf_counter()
    vocabulary_size, length = 16, 12
    train_size, epochs = (4000, 5) if fast else (6000, 8)
    x_train, y_train = first_token_repeats_data(train_size, length, vocabulary_size, seed)
    x_test, y_test = first_token_repeats_data(1000, length, vocabulary_size, seed + 1)
    classifier = build_classifier(vocabulary_size, length)
    classifier.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    log(f"[1/2] encoder classifier: does the first token appear again? "
        f"({classifier.count_params():,} parameters)")
    classifier.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=verbose)
    _, accuracy = classifier.evaluate(x_test, y_test, verbose=0)
    metrics["classifier_accuracy"] = float(accuracy)
    metrics["classifier_seconds"] = time.perf_counter() - started
    log(f"      test accuracy {accuracy:.3f} (chance 0.5) in {metrics['classifier_seconds']:.0f}s")

    started = time.perf_counter()
    span, copy_vocabulary = 5, 12
    train_size, epochs = (3000, 6) if fast else (6000, 8)
    inputs, targets, weights = copy_task_data(train_size, span, copy_vocabulary, seed)
    model = CopyLanguageModel(copy_vocabulary, 2 * span)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    log("[2/2] decoder language model: copy a sequence after a separator")
    history = model.fit(
        inputs, targets, sample_weight=weights, batch_size=64, epochs=epochs, verbose=verbose
    )
    test_inputs, _, _ = copy_task_data(200, span, copy_vocabulary, seed + 1)
    prompts = test_inputs[:, : span + 1]
    uncached = greedy_copy(model, prompts, 2 * span + 1, use_cache=False)
    cached = greedy_copy(model, prompts, 2 * span + 1, use_cache=True)
    copied = cached[:, span + 1 :] == prompts[:, :span]
    metrics["copy_loss_first_epoch"] = float(history.history["loss"][0])
    metrics["copy_loss_last_epoch"] = float(history.history["loss"][-1])
    metrics["copy_token_accuracy"] = float(copied.mean())
    metrics["copy_exact_match"] = float(copied.all(axis=1).mean())
    metrics["cached_equals_uncached"] = bool(np.array_equal(cached, uncached))
    metrics["copy_seconds"] = time.perf_counter() - started
    log(f"      loss {metrics['copy_loss_first_epoch']:.3f} -> "
        f"{metrics['copy_loss_last_epoch']:.3f}; greedy copy exact match "
        f"{metrics['copy_exact_match']:.3f}; cached decoding == full re-run: "
        f"{metrics['cached_equals_uncached']} ({metrics['copy_seconds']:.0f}s)")
    log(f"      example: {prompts[0].tolist()} -> {cached[0, span + 1:].tolist()}")
    return metrics
