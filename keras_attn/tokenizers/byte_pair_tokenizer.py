"""GPT-2's byte-level byte-pair encoding as a keras-attn tokenizer, in
TensorFlow graph ops that hold no resource (so it survives SavedModel
export)."""

import json
import os

import keras
import numpy as np

# Tokenizers are TensorFlow preprocessing by nature (tf.strings / tf_text ops
# inside tf.data and exported graphs), so this package uses `tf` directly.
import tensorflow as tf

# keras-hub's GPT-2 pre-tokenization: its regular expressions emulate GPT-2's
# look-ahead with RE2 through tensorflow-text's `regex_split` (stateless ops).
from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode, split_strings_for_bpe

from keras_attn.tokenizers.special_tokens import SPECIAL_ROLES
from keras_attn.tokenizers.tokenizer import Tokenizer
from keras_attn.utils.atomic_files import write_text_atomically

VOCABULARY_JSON_FILENAME = "vocabulary.json"
MERGES_FILENAME = "merges.txt"
# Strings are found by a 62-bit fingerprint (`tf.strings.to_hash_bucket_fast`)
# in a sorted array, then compared in full.
_HASH_BUCKETS = 2**62


class _StringIndex:
    """`keys[i] -> values[i]` for a fixed list of strings, as graph ops.

    A `tf.lookup` table is a resource: made eagerly and captured, an export
    must track it (keras-hub's BPE fails there with "untracked resource").
    This index is two constants and a binary search instead, so every graph
    (eager `tf.function`s, `tf.data` maps, exported signatures) embeds its
    own copy and nothing needs tracking.
    """

    def __init__(self, keys, values):
        keys = list(keys)
        hashes = tf.strings.to_hash_bucket_fast(tf.constant(keys, tf.string), _HASH_BUCKETS)
        hashes = hashes.numpy()
        order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[order]
        if len(self.hashes) > 1 and np.any(self.hashes[1:] == self.hashes[:-1]):
            raise ValueError("two tokens share a 62-bit fingerprint; this vocabulary cannot be "
                             "indexed")
        self.keys = np.array(keys, dtype=object)[order]
        self.values = np.asarray(values)[order]

    def lookup(self, strings, default):
        """`values` of `strings` (any shape), `default` where absent."""
        hashes = tf.strings.to_hash_bucket_fast(strings, _HASH_BUCKETS)
        flat = tf.reshape(hashes, [-1])
        sorted_hashes = tf.constant(self.hashes, tf.int64)
        index = tf.searchsorted(sorted_hashes, flat)
        index = tf.minimum(index, len(self.hashes) - 1)
        found = tf.equal(tf.gather(sorted_hashes, index), flat) & tf.equal(
            tf.gather(tf.constant(self.keys.tolist(), tf.string), index),
            tf.reshape(strings, [-1]),
        )
        values = tf.constant(self.values)
        result = tf.where(found, tf.gather(values, index), tf.cast(default, values.dtype))
        return tf.reshape(result, tf.shape(strings))


@keras.saving.register_keras_serializable(package="keras_attn")
class BytePairTokenizer(Tokenizer):
    """Byte-level BPE (GPT-2, RoBERTa): a checkpoint's vocabulary and merges.

    Text is cut into words by GPT-2's pattern (contractions `'s`, `'t`,
    ...; letters with one leading space; runs of up to three digits;
    punctuation; whitespace), each word's UTF-8 bytes are spelled with
    GPT-2's printable byte alphabet (`"Ġ"` is a space), and adjacent symbols
    are merged, lowest-ranked merge first, until no merge applies. Every
    byte is in the vocabulary, so any text round-trips:
    `detokenize(tokenize(text)) == text` (special token spellings in the
    text, e.g. `"<|endoftext|>"`, become their own id and are dropped by
    `detokenize` like other structural tokens).

    The ids equal keras-hub's `BytePairTokenizer` / `GPT2Tokenizer` on the
    same vocabulary and merges. All of it is TensorFlow graph ops without
    lookup tables or caches, so it runs in `tf.data`, in the preprocessors
    and inside an exported SavedModel (tensorflow-text kernels needed, as
    for WordPiece). It cannot be trained here: it comes from a checkpoint
    (`keras_attn.models.converters.gpt2_tokenizer`).

    Assets: `vocabulary.json` (token -> id) and `merges.txt` (one `"a b"`
    rule per line, by rank), the keras-hub / Hugging Face formats.

    Args:
        vocabulary: dict token -> id (ids `0..n-1`, each once), or a path to
            such a json file; `None` to load it later with `load_assets`.
        merges: list of `"left right"` rules, lowest rank first, or a path
            to a merges file (a `#version` line is skipped); `None` with
            `vocabulary=None`.
        special_token_ids: `{role: id}` for the roles `"pad"`, `"unk"`,
            `"bos"`, `"eos"`, `"sep"`, `"cls"`, `"mask"` (roles may share an
            id: GPT-2's `<|endoftext|>` plays them all).
        unsplittable_tokens: strings kept whole wherever they occur in the
            text (default: the special tokens' spellings).
        add_prefix_space: prepend a space to every text (RoBERTa-style).
        **kwargs: standard layer arguments (`name`, ...).

    Example:
    >>> vocabulary = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate(
    ...     bytes_to_unicode()[1])}}
    >>> vocabulary["Ġa"] = len(vocabulary)
    >>> ends = {role: 0 for role in SPECIAL_ROLES}
    >>> tokenizer = BytePairTokenizer(vocabulary, ["Ġ a"], special_token_ids=ends)
    >>> ids = tokenizer.tokenize("b a")
    >>> tokenizer.detokenize(ids).numpy()
    b'b a'
    """

    def __init__(
        self,
        vocabulary=None,
        merges=None,
        special_token_ids=None,
        unsplittable_tokens=None,
        add_prefix_space=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.add_prefix_space = bool(add_prefix_space)
        self._special_token_ids = _check_special_token_ids(special_token_ids)
        self._unsplittable_tokens = (
            None if unsplittable_tokens is None else [str(t) for t in unsplittable_tokens]
        )
        self._vocabulary = None
        if vocabulary is not None or merges is not None:
            self.set_vocabulary_and_merges(vocabulary, merges)

    # ------------------------------------------------------------ vocabulary

    def set_vocabulary_and_merges(self, vocabulary, merges):
        """Replaces the vocabulary (dict or json path) and merges (list or
        path)."""
        vocabulary = _read_vocabulary(vocabulary)
        merges = _read_merges(merges)
        tokens = [None] * len(vocabulary)
        for token, index in vocabulary.items():
            if not isinstance(index, (int, np.integer)) or not 0 <= index < len(tokens) or (
                tokens[index] is not None
            ):
                raise ValueError(
                    "`vocabulary` must map tokens to the ids 0..n-1, each once. Received: "
                    f"{token!r} -> {index!r} in a vocabulary of {len(tokens)} tokens"
                )
            tokens[index] = token
        for rule in merges:
            parts = rule.split(" ")
            if len(parts) != 2 or parts[0] not in vocabulary or parts[1] not in vocabulary:
                raise ValueError(
                    "`merges` must be 'left right' rules between vocabulary tokens. "
                    f"Received: {rule!r}"
                )
        for role, index in self._special_token_ids.items():
            if index >= len(tokens):
                raise ValueError(
                    f"`special_token_ids` must be ids of the vocabulary (size {len(tokens)}). "
                    f"Received: {role}={index}"
                )
        byte_values = list(range(256))
        byte_strings, byte_symbols = bytes_to_unicode()
        by_byte = {b[0]: s for b, s in zip(byte_strings, byte_symbols)}
        untracked = self._untracked
        untracked.tokens = tokens
        untracked.token_ids = dict(vocabulary)
        untracked.merges = merges
        untracked.vocabulary_index = _StringIndex(tokens, np.arange(len(tokens), dtype=np.int32))
        untracked.merge_index = _StringIndex(merges, np.arange(len(merges), dtype=np.int32))
        untracked.byte_index = _StringIndex([bytes([b]) for b in byte_values], byte_values)
        untracked.byte_symbols = [by_byte[b] for b in byte_values]
        untracked.symbol_index = _StringIndex(untracked.byte_symbols, byte_values)
        self._vocabulary = vocabulary
        self._forget_graphs()

    @property
    def special_token_ids(self):
        return dict(self._special_token_ids)

    @property
    def unsplittable_tokens(self):
        """Strings never cut (default: the special tokens' spellings)."""
        if self._unsplittable_tokens is not None:
            return list(self._unsplittable_tokens)
        return sorted({self.id_to_token(i) for i in self.special_ids})

    @property
    def has_vocabulary(self):
        return self._vocabulary is not None

    @property
    def vocabulary_size(self):
        return len(self._checked().tokens)

    def get_vocabulary(self):
        return list(self._checked().tokens)

    def get_merges(self):
        """The merge rules, lowest rank first."""
        return list(self._checked().merges)

    def token_to_id(self, token):
        token_ids = self._checked().token_ids
        if token not in token_ids:
            raise ValueError(f"`token` must be in the vocabulary. Received: token={token!r}")
        return token_ids[token]

    def id_to_token(self, id):
        tokens = self._checked().tokens
        if isinstance(id, (bool, np.bool_)) or not isinstance(id, (int, np.integer)):
            raise ValueError(f"`id` must be an integer. Received: id={id!r}")
        if not 0 <= id < len(tokens):
            raise ValueError(f"`id` must be in [0, {len(tokens)}). Received: id={id!r}")
        return tokens[int(id)]

    def _checked(self):
        if self._vocabulary is None:
            raise ValueError(
                "This BytePairTokenizer has no vocabulary yet. Pass `vocabulary=` and "
                "`merges=`, convert a checkpoint's (keras_attn.models.converters), or load one "
                "with `Tokenizer.from_directory(dir_path)` / `load_assets(dir_path)`."
            )
        return self._untracked

    # ----------------------------------------------------------- text <-> ids

    def _tokenize_batch(self, texts):
        untracked = self._checked()
        if self.add_prefix_space:
            texts = tf.strings.join([" ", texts])
        unsplittable = self.unsplittable_tokens
        words = split_strings_for_bpe(texts, unsplittable)  # ragged (batch, words)
        flat_words = words.flat_values
        # Each word's bytes in GPT-2's printable alphabet.
        byte_strings = tf.strings.bytes_split(flat_words)
        byte_values = untracked.byte_index.lookup(byte_strings.flat_values, 0)
        symbols = byte_strings.with_flat_values(
            tf.gather(tf.constant(untracked.byte_symbols), byte_values)
        ).to_tensor("")
        whole = tf.reduce_any(
            tf.equal(flat_words[:, None], tf.constant(unsplittable or [""], tf.string)), axis=1
        ) & tf.constant(bool(unsplittable))
        # An unsplittable word is one finished symbol: no pair can merge it.
        width = tf.shape(symbols)[1]
        first = tf.equal(tf.range(width), 0)[None, :]
        symbols = tf.where(
            whole[:, None], tf.where(first, flat_words[:, None], tf.constant("")), symbols
        )
        pieces = self._merge(symbols)
        ids = untracked.vocabulary_index.lookup(pieces.flat_values, self.unk_id)
        pieces = pieces.with_flat_values(tf.cast(ids, tf.int32))
        return tf.RaggedTensor.from_row_splits(
            pieces.flat_values, tf.gather(pieces.row_splits, words.row_splits)
        ).with_row_splits_dtype(tf.int64)

    def _merge(self, symbols):
        """Applies the merges to each row of `symbols` (words, width),
        rows right-padded with `""`; returns the ragged pieces."""
        merge_index = self._untracked.merge_index
        never = len(self._untracked.merges)

        def step(words, active):
            left, right = words[:, :-1], words[:, 1:]
            ranks = merge_index.lookup(tf.strings.join([left, right], separator=" "), never)
            ranks = tf.where(tf.equal(right, "") | tf.equal(left, ""), never, ranks)
            ranks = tf.concat([ranks, tf.fill([tf.shape(words)[0], 1], never)], axis=1)
            best = tf.argmin(ranks, axis=1, output_type=tf.int32)
            active = tf.reduce_min(ranks, axis=1) < never
            # Like keras-hub: the first occurrence of the lowest-ranked pair
            # merges into its left slot, and the right slot empties.
            positions = tf.range(tf.shape(words)[1])[None, :]
            at_best = tf.equal(positions, best[:, None]) & active[:, None]
            after_best = tf.equal(positions, best[:, None] + 1) & active[:, None]
            following = tf.concat([words[:, 1:], tf.fill([tf.shape(words)[0], 1], "")], axis=1)
            words = tf.where(at_best, tf.strings.join([words, following]), words)
            words = tf.where(after_best, "", words)
            kept = tf.ragged.boolean_mask(words, tf.not_equal(words, ""))
            return kept.to_tensor("", shape=tf.shape(words)), active

        def more(words, active):
            return tf.reduce_any(active)

        active = tf.fill([tf.shape(symbols)[0]], True)
        words, _ = tf.while_loop(more, step, (symbols, active))
        return tf.ragged.boolean_mask(words, tf.not_equal(words, ""))

    def _detokenize_batch(self, ids):
        untracked = self._checked()
        tokens = tf.gather(tf.constant(untracked.tokens, tf.string), ids)
        joined = tf.strings.reduce_join(tokens, axis=1)
        characters = tf.strings.unicode_split(joined, "UTF-8")
        byte_values = untracked.symbol_index.lookup(characters.flat_values, -1)
        known = byte_values >= 0
        byte_strings = tf.where(
            known,
            tf.gather(tf.constant([bytes([b]) for b in range(256)]), tf.maximum(byte_values, 0)),
            characters.flat_values,
        )
        return tf.strings.reduce_join(characters.with_flat_values(byte_strings), axis=1)

    # ---------------------------------------------------------------- saving

    def save_assets(self, dir_path):
        untracked = self._checked()
        vocabulary = {token: index for index, token in enumerate(untracked.tokens)}
        write_text_atomically(
            os.path.join(dir_path, VOCABULARY_JSON_FILENAME),
            json.dumps(vocabulary, ensure_ascii=False),
        )
        write_text_atomically(
            os.path.join(dir_path, MERGES_FILENAME),
            "".join(rule + "\n" for rule in untracked.merges),
        )

    def load_assets(self, dir_path):
        self.set_vocabulary_and_merges(
            os.path.join(dir_path, VOCABULARY_JSON_FILENAME),
            os.path.join(dir_path, MERGES_FILENAME),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "special_token_ids": dict(self._special_token_ids),
                "unsplittable_tokens": self._unsplittable_tokens,
                "add_prefix_space": self.add_prefix_space,
            }
        )
        return config


def _check_special_token_ids(special_token_ids):
    if not isinstance(special_token_ids, dict) or set(special_token_ids) != set(SPECIAL_ROLES):
        raise ValueError(
            f"`special_token_ids` must be a dict with the roles {list(SPECIAL_ROLES)} (ids of "
            f"the checkpoint's tokens; roles may share one). Received: "
            f"special_token_ids={special_token_ids!r}"
        )
    checked = {}
    for role in SPECIAL_ROLES:
        value = special_token_ids[role]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(
                f"`special_token_ids` must hold non-negative int ids. Received: {role}={value!r}"
            )
        checked[role] = int(value)
    return checked


def _read_vocabulary(vocabulary):
    if isinstance(vocabulary, str):
        with open(vocabulary, encoding="utf-8") as file:
            vocabulary = json.load(file)
    if not isinstance(vocabulary, dict) or not vocabulary:
        raise ValueError(
            "`vocabulary` must be a non-empty dict token -> id, or the path of such a json "
            f"file. Received: vocabulary of type {type(vocabulary).__name__}"
        )
    return dict(vocabulary)


def _read_merges(merges):
    if isinstance(merges, str):
        with open(merges, encoding="utf-8") as file:
            merges = file.read().split("\n")
    if merges is None or isinstance(merges, (str, bytes)):
        raise ValueError(
            "`merges` must be a list of 'left right' rules, or the path of a merges file. "
            f"Received: merges={merges!r}"
        )
    return [str(rule) for rule in merges if str(rule) and not str(rule).startswith("#version")]
