"""The base class of keras-attn tokenizers: shared special tokens, batching,
the same TensorFlow graph eagerly and inside `tf.function` / `tf.data`,
detokenize clean-up, and saving to a directory."""

import json
import os

import keras

# Tokenizers are TensorFlow preprocessing by nature (tf.strings / tf_text ops
# inside tf.data and exported graphs), so this package uses `tf` directly.
import tensorflow as tf

from keras_attn.tokenizers.inputs import ragged_id_batch, string_batch
from keras_attn.tokenizers.special_tokens import (
    DEFAULT_SPECIAL_TOKEN_IDS,
    STRUCTURAL_ROLES,
)
from keras_attn.utils.atomic_files import write_json_atomically
from keras_attn.utils.untracked import Untracked

CONFIG_FILENAME = "tokenizer.json"

_TEXTS_SPEC = tf.TensorSpec([None], tf.string)
_IDS_SPEC = tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1, row_splits_dtype=tf.int64)


class Tokenizer(keras.layers.Layer):
    """Base class of keras-attn tokenizers: strings to token ids and back.

    Tokenizers trained here reserve the same special tokens at the same ids
    (`keras_attn.tokenizers.SPECIAL_TOKENS`): `[PAD]`=0, `[UNK]`=1, `[BOS]`=2,
    `[EOS]`=3, `[SEP]`=4, `[CLS]`=5, `[MASK]`=6; a tokenizer converted from
    a pretrained checkpoint keeps the checkpoint's ids
    (`special_token_ids`). Either way they are `pad_id`, `unk_id`, ...
    `mask_id`, and together `special_ids`.

    `tokenize` and `detokenize` are TensorFlow graphs: they run eagerly, inside
    `tf.function` and inside `tf.data.Dataset.map`, with the same results (an
    eager call runs the same graph through a cached `tf.function`).

    Saving: `tokenizer.save(dir_path)` writes `tokenizer.json` (the Keras
    config) plus the vocabulary assets, if any; `Tokenizer.from_directory(
    dir_path)` (on the base class or the subclass) rebuilds it. The assets go
    through the Keras hooks `save_assets(dir_path)` / `load_assets(dir_path)`,
    so a tokenizer held by a model also travels inside `.keras` files.
    `get_config()` does not contain the vocabulary: `from_config` alone gives a
    tokenizer that still needs `load_assets`.

    Calling the layer, `tokenizer(texts)`, is `tokenizer.tokenize(texts)`.

    Subclasses implement `_tokenize_batch` (1-D strings -> ragged int32 ids),
    `_detokenize_batch` (ragged int32 ids without structural tokens -> 1-D
    strings), `vocabulary_size`, `get_vocabulary`, `token_to_id` and
    `id_to_token`.

    Example (with `ByteTokenizer`, a subclass; ids are ragged int32
    `(batch, None)`, texts 1-D `tf.string`):
    >>> from keras_attn.tokenizers import ByteTokenizer
    >>> tokenizer = ByteTokenizer()
    >>> ids = tokenizer(["hi", "abc"])
    >>> ids.to_list(), tokenizer.detokenize(ids).numpy().tolist()
    ([[111, 112], [104, 105, 106]], [b'hi', b'abc'])
    >>> tokenizer.pad_id, tokenizer.mask_id, tokenizer.vocabulary_size
    (0, 6, 263)
    >>> tokenizer.save("byte_tokenizer")
    >>> type(Tokenizer.from_directory("byte_tokenizer")).__name__
    'ByteTokenizer'
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Inputs are strings and ragged ids: Keras must not convert them.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self._untracked = Untracked()
        self.built = True

    # Special tokens: ids 0-6 unless the vocabulary is a checkpoint's.

    @property
    def special_token_ids(self):
        """`{role: id}` for the roles `"pad"`, `"unk"`, `"bos"`, `"eos"`,
        `"sep"`, `"cls"` and `"mask"`: `0, ..., 6` for tokenizers trained
        here; a pretrained checkpoint's own ids for tokenizers converted from
        one (roles may then share an id)."""
        return DEFAULT_SPECIAL_TOKEN_IDS

    @property
    def pad_id(self):
        return self.special_token_ids["pad"]

    @property
    def unk_id(self):
        return self.special_token_ids["unk"]

    @property
    def bos_id(self):
        return self.special_token_ids["bos"]

    @property
    def eos_id(self):
        return self.special_token_ids["eos"]

    @property
    def sep_id(self):
        return self.special_token_ids["sep"]

    @property
    def cls_id(self):
        return self.special_token_ids["cls"]

    @property
    def mask_id(self):
        return self.special_token_ids["mask"]

    @property
    def has_vocabulary(self):
        """False while a vocabulary is still to come (e.g. from `load_assets`)."""
        return True

    @property
    def special_ids(self):
        """The distinct special token ids, ascending (`(0, 1, ..., 6)` for
        tokenizers trained here)."""
        return tuple(sorted(set(self.special_token_ids.values())))

    @property
    def special_tokens(self):
        """The special token strings of `special_ids`, in that order."""
        return tuple(self.id_to_token(i) for i in self.special_ids)

    @property
    def structural_ids(self):
        """Ids `detokenize` drops (padding, start, end, separator, class);
        `[UNK]` and `[MASK]` stand for content and stay."""
        return tuple(sorted({self.special_token_ids[role] for role in STRUCTURAL_ROLES}))

    # Vocabulary: implemented by subclasses.

    @property
    def vocabulary_size(self):
        """Number of token ids, special tokens included."""
        raise NotImplementedError

    def get_vocabulary(self):
        """All tokens as a list of strings, index = id."""
        raise NotImplementedError

    def token_to_id(self, token):
        """The id of a token string; `ValueError` if it has none."""
        raise NotImplementedError

    def id_to_token(self, id):
        """The token string of an id; `ValueError` if out of range."""
        raise NotImplementedError

    # Text <-> ids. Written in graph-ready TensorFlow: a `tf.data` map must not
    # autograph-convert them (its conversion of the vocabulary accessors
    # failed depending on what the process had converted before).

    @tf.autograph.experimental.do_not_convert
    def tokenize(self, texts):
        """Token ids of a batch of strings.

        Args:
            texts: a string, or a 1-D batch of strings (list, array or
                `tf.string` tensor).

        Returns:
            A `tf.RaggedTensor` of int32 ids, shape `(batch, None)`; for a
            single string, a dense 1-D int32 tensor of shape `(None,)`. No
            special tokens are added (see `keras_attn.tokenizers.pack`).
        """
        texts, unbatched = string_batch("texts", texts)
        ids = self._as_graph("tokenize", self._tokenize_batch, texts, _TEXTS_SPEC)
        return ids[0] if unbatched else ids

    @tf.autograph.experimental.do_not_convert
    def detokenize(self, ids):
        """Text of token ids.

        Per row, everything from the first `[EOS]` on is dropped, then
        `[PAD]`, `[BOS]`, `[SEP]` and `[CLS]`; `[UNK]` and `[MASK]` stay as
        text. Ids outside `[0, vocabulary_size)` are read as `[UNK]`.

        Args:
            ids: int token ids, `(batch, None)` as a `tf.RaggedTensor`, a
                dense tensor or array (e.g. padded model output), or nested
                lists; or one sequence `(None,)`.

        Returns:
            A `tf.string` tensor of shape `(batch,)`, or a scalar for one
            sequence.
        """
        ids, unbatched = ragged_id_batch("ids", ids)
        texts = self._as_graph("detokenize", self._detokenize_cleaned, ids, _IDS_SPEC)
        return texts[0] if unbatched else texts

    @tf.autograph.experimental.do_not_convert
    def call(self, texts):
        return self.tokenize(texts)

    def _tokenize_batch(self, texts):
        raise NotImplementedError

    def _detokenize_batch(self, ids):
        raise NotImplementedError

    def _detokenize_cleaned(self, ids):
        vocabulary_size = self.vocabulary_size
        ids = tf.ragged.map_flat_values(
            lambda values: tf.where(
                (values >= 0) & (values < vocabulary_size), values,
                tf.constant(self.unk_id, tf.int32),
            ),
            ids,
        )
        ends = tf.cast(tf.equal(ids, self.eos_id), tf.int32)
        before_eos = tf.equal(tf.math.cumsum(ends, axis=1), 0)
        structural = tf.ragged.map_flat_values(
            lambda values: tf.reduce_any(
                tf.equal(values[:, None], tf.constant(self.structural_ids, tf.int32)), axis=1
            ),
            ids,
        )
        ids = tf.ragged.boolean_mask(ids, before_eos & tf.logical_not(structural))
        return self._detokenize_batch(ids)

    def _as_graph(self, name, function, value, spec):
        """Runs `function(value)`, eagerly through a cached `tf.function`, so
        eager calls run the very graph that `tf.data` and exports run."""
        if not tf.executing_eagerly():
            return function(value)
        functions = self._untracked.functions
        if name not in functions:
            functions[name] = tf.function(function, input_signature=[spec], autograph=False)
        return functions[name](value)

    def _forget_graphs(self):
        """Drops cached graphs; call when the vocabulary changes."""
        self._untracked.functions.clear()

    # Saving.

    def save_assets(self, dir_path):
        """Keras hook: writes the vocabulary files into `dir_path` (none here)."""

    def load_assets(self, dir_path):
        """Keras hook: reads what `save_assets` wrote (nothing here)."""

    def save(self, dir_path):
        """Writes `tokenizer.json` and the vocabulary assets into `dir_path`.

        The directory is created if needed; files are replaced atomically.
        Rebuild the tokenizer with `Tokenizer.from_directory(dir_path)`.
        """
        os.makedirs(dir_path, exist_ok=True)
        config = keras.saving.serialize_keras_object(self)
        write_json_atomically(os.path.join(dir_path, CONFIG_FILENAME), config)
        self.save_assets(dir_path)

    @classmethod
    def from_directory(cls, dir_path):
        """Rebuilds a tokenizer written by `save(dir_path)`.

        Called on the base class, returns whichever tokenizer was saved;
        called on a subclass, raises `ValueError` if the saved one is another.
        """
        path = os.path.join(dir_path, CONFIG_FILENAME)
        if not os.path.isfile(path):
            raise ValueError(
                f"`dir_path` must be a directory written by `Tokenizer.save()`, with a "
                f"{CONFIG_FILENAME} file. Received: dir_path={dir_path!r}"
            )
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
        tokenizer = keras.saving.deserialize_keras_object(config)
        if not isinstance(tokenizer, cls):
            raise ValueError(
                f"`dir_path` must hold a {cls.__name__}. Received: dir_path={dir_path!r} "
                f"holding a {type(tokenizer).__name__}"
            )
        tokenizer.load_assets(dir_path)
        return tokenizer

    def get_build_config(self):
        # Nothing to build: tokenizers have no weights.
        return None

