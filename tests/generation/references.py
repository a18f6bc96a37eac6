"""Toy models for the decoding loops and plain NumPy references (no caches,
no batching) to compare them against."""

import numpy as np
from keras import ops

from keras_attn.models import DecoderBackbone


def log_softmax(logits):
    logits = np.asarray(logits, "float64")
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def random_table(vocab, seed=0, scale=2.0):
    """A bigram logits table: `table[t]` are the logits after token `t`."""
    return (np.random.default_rng(seed).normal(size=(vocab, vocab)) * scale).astype("float32")


def bigram_next_fn(table):
    """`next_fn` of a bigram model; its cache counts the steps each row took."""
    table = ops.convert_to_tensor(table)

    def next_fn(token_ids, cache, index):
        logits = ops.take(table, token_ids[:, 0], axis=0)
        if cache is not None:
            cache = {"steps": cache["steps"] + 1}
        return logits, cache

    return next_fn


def bigram_logits_fn(table):
    """The same model on a whole prefix, for the references."""
    return lambda prefix: table[prefix[-1]]


def history_next_fn(table):
    """`next_fn` of a 4-gram model `table[t-2, t-1, t]` that reads the two
    previous tokens from its cache only: a cache not reordered with its beam
    gives wrong logits.

    Cache: `{"history": (B, L) int32, "kv": ((B, 2, L, 1, 1) float32,)}`; the
    token at `index` is written into both; `t-1` is read from `history`,
    `t-2` from `kv` (a key/value-cache-shaped leaf). Tokens before position 0
    read as 0.
    """
    table = ops.convert_to_tensor(table)

    def next_fn(token_ids, cache, index):
        history = cache["history"]
        (kv,) = cache["kv"]
        batch = ops.shape(token_ids)[0]
        history = ops.slice_update(history, [0, index], token_ids)
        value = ops.cast(ops.reshape(token_ids, (batch, 1, 1, 1, 1)), kv.dtype)
        kv = ops.slice_update(kv, [0, 0, index, 0, 0], value)
        previous = ops.where(index >= 1, ops.take(history, ops.maximum(index - 1, 0), axis=1), 0)
        before = ops.take(kv[:, 0, :, 0, 0], ops.maximum(index - 2, 0), axis=1)
        before = ops.where(index >= 2, ops.cast(before, "int32"), 0)
        vocab = table.shape[0]
        flat = (before * vocab + previous) * vocab + token_ids[:, 0]
        logits = ops.take(ops.reshape(table, (vocab**3, vocab)), flat, axis=0)
        return logits, {"history": history, "kv": (kv,)}

    return next_fn


def empty_history_cache(batch, length):
    return {
        "history": np.zeros((batch, length), "int32"),
        "kv": (np.zeros((batch, 2, length, 1, 1), "float32"),),
    }


def history_logits_fn(table):
    def logits_fn(prefix):
        padded = [0, 0] + list(prefix)
        return table[padded[-3], padded[-2], padded[-1]]

    return logits_fn


def greedy_reference(logits_fn, prompt, length, stop_token_ids=(), pad_id=0):
    """Greedy decoding of one prompt, one full re-run per token."""
    tokens = list(prompt)
    stopped = False
    while len(tokens) < length:
        if stopped:
            tokens.append(pad_id)
            continue
        token = int(np.argmax(logits_fn(tokens)))
        tokens.append(token)
        stopped = token in stop_token_ids
    return np.array(tokens)


def gnmt_penalty(generated_length, alpha):
    return ((5.0 + generated_length) / 6.0) ** alpha


def exhaustive_best(logits_fn, prompt, length, eos_id, alpha, pad_id=0):
    """The best eos-terminated continuation of `prompt` within `length`
    tokens, by `log_prob / gnmt_penalty(generated_length, alpha)`, found by
    trying them all. Returns `(token_ids (length,), score)`."""
    best_score, best = -np.inf, None
    budget = length - len(prompt)

    def extend(prefix, log_prob):
        nonlocal best_score, best
        generated = len(prefix) - len(prompt) + 1
        log_probs = log_softmax(logits_fn(prefix))
        for token, step in enumerate(log_probs):
            if token == eos_id:
                score = (log_prob + step) / gnmt_penalty(generated, alpha)
                if score > best_score:
                    best_score, best = score, prefix + [token]
            elif generated < budget:
                extend(prefix + [token], log_prob + step)

    extend(list(prompt), 0.0)
    return np.array(best + [pad_id] * (length - len(best))), best_score


def pad_prompts(prompts, length, pad_id=0):
    """Right-pads prompts into `(token_ids, prompt_mask)` of width `length`."""
    token_ids = np.full((len(prompts), length), pad_id, "int32")
    mask = np.zeros((len(prompts), length), bool)
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = True
    return token_ids, mask


def tiny_decoder_lm(vocab=12, length=10, seed=0):
    """An untrained `DecoderBackbone` with its per-block caches."""
    import keras

    keras.utils.set_random_seed(seed)
    model = DecoderBackbone(
        vocabulary_size=vocab, sequence_length=length, num_layers=2, num_heads=4,
        hidden_dim=16, intermediate_dim=32,
    )

    # Id 0 is padding (masked by the embedding): the model never predicts it.
    no_padding = np.where(np.arange(vocab) == 0, -1e9, 0.0).astype("float32")

    def logits_of(hidden):
        return ops.convert_to_numpy(model.token_embedding(hidden, reverse=True))

    def next_fn(token_ids, caches, index):
        hidden, caches = model.call_with_cache(token_ids, caches, index)
        return model.token_embedding(hidden[:, -1], reverse=True) + no_padding, caches

    def empty_caches(batch):
        return list(model.empty_caches(batch, length))

    def logits_fn(prefix):
        padded = np.zeros((1, length), "int32")
        padded[0, : len(prefix)] = prefix
        hidden = model(padded)["sequence_output"]
        return logits_of(hidden)[0, len(prefix) - 1] + no_padding

    return next_fn, empty_caches, logits_fn


def controlled_logits_fn(logits_fn, no_repeat_ngram_size=0, repetition_penalty=1.0):
    """`logits_fn` with the repetition controls, written out plainly: the
    penalty on every token of the prefix, then `-inf` on every token that
    ends an n-gram of the prefix whose first `n - 1` tokens are the prefix's
    last `n - 1` (unless that bans every token)."""

    def controlled(prefix):
        logits = np.array(logits_fn(prefix), "float64")
        if repetition_penalty != 1.0:
            for token in set(prefix):
                value = logits[token]
                logits[token] = value / repetition_penalty if value > 0 else (
                    value * repetition_penalty
                )
        n = no_repeat_ngram_size
        if n > 0 and len(prefix) >= n - 1:
            tail = tuple(prefix[len(prefix) - (n - 1):])
            banned = {
                prefix[start + n - 1]
                for start in range(len(prefix) - n + 1)
                if tuple(prefix[start : start + n - 1]) == tail
            }
            if len(banned) < len(logits):
                logits[list(banned)] = -np.inf
        return logits

    return controlled


def repeated_ngrams(tokens, n):
    """The n-grams that occur more than once in `tokens`."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return sorted({gram for gram in grams if grams.count(gram) > 1})
