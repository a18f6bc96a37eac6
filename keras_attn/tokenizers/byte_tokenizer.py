"""A byte-level tokenizer: no vocabulary to train, any text round-trips."""

import keras
import numpy as np

# Tokenizers are TensorFlow preprocessing by nature (tf.strings / tf_text ops
# inside tf.data and exported graphs), so this package uses `tf` directly.
import tensorflow as tf

from keras_attn.tokenizers.special_tokens import SPECIAL_TOKENS
from keras_attn.tokenizers.tokenizer import Tokenizer

BYTE_OFFSET = len(SPECIAL_TOKENS)


@keras.saving.register_keras_serializable(package="keras_attn")
class ByteTokenizer(Tokenizer):
    """Tokenizes text into its UTF-8 bytes, shifted past the special tokens.

    Byte `b` has id `b + 7`, so ids 0-6 keep their special meaning and the
    vocabulary has `7 + 256 = 263` ids. Nothing is normalized: `detokenize(
    tokenize(text))` gives back `text` exactly, for any UTF-8 text (accents,
    emoji, NUL characters). Rows of ids that are not valid UTF-8 (a model's
    output can be anything) detokenize with U+FFFD in place of the broken
    bytes.

    `id_to_token` names byte `b` by the character `chr(b)` (Latin-1), e.g.
    `"a"` for id 104; `token_to_id` accepts such one-character strings, a
    one-byte `bytes`, or a special token.

    keras-hub's `ByteTokenizer` is not used: its detokenize drops the byte 0
    (it reads it as padding) and it has no room for the special tokens.

    Args:
        **kwargs: standard layer arguments (`name`, ...).

    Example:
    >>> tokenizer = ByteTokenizer()
    >>> tokenizer.tokenize(["hé"]).to_list()  # UTF-8 bytes 104, 195, 169, each + 7
    [[111, 202, 176]]
    >>> texts = tokenizer.detokenize([[111, 202, 176, 3, 50]])  # stops at [EOS], id 3
    >>> [text.decode("utf-8") for text in texts.numpy()]
    ['hé']
    """

    @property
    def vocabulary_size(self):
        return BYTE_OFFSET + 256

    def get_vocabulary(self):
        return list(SPECIAL_TOKENS) + [chr(byte) for byte in range(256)]

    def token_to_id(self, token):
        if token in SPECIAL_TOKENS:
            return SPECIAL_TOKENS.index(token)
        if isinstance(token, bytes) and len(token) == 1:
            return token[0] + BYTE_OFFSET
        if isinstance(token, str) and len(token) == 1 and ord(token) < 256:
            return ord(token) + BYTE_OFFSET
        raise ValueError(
            "`token` must be a special token, a one-byte `bytes` or a character below U+0100. "
            f"Received: token={token!r}"
        )

    def id_to_token(self, id):
        if isinstance(id, (bool, np.bool_)) or not isinstance(id, (int, np.integer)):
            raise ValueError(f"`id` must be an integer. Received: id={id!r}")
        if not 0 <= id < self.vocabulary_size:
            raise ValueError(f"`id` must be in [0, {self.vocabulary_size}). Received: id={id!r}")
        return self.get_vocabulary()[int(id)]

    def _tokenize_batch(self, texts):
        pieces = tf.strings.bytes_split(texts)  # ragged one-byte strings
        return tf.ragged.map_flat_values(
            # One byte per string, so the decoded (n, 1) bytes flatten to (n,).
            lambda values: tf.cast(tf.reshape(tf.io.decode_raw(values, tf.uint8), [-1]), tf.int32)
            + BYTE_OFFSET,
            pieces,
        )

    def _detokenize_batch(self, ids):
        # Special ids still here ([UNK], [MASK]) are spelled out as tokens.
        table = tf.constant(
            [token.encode("utf-8") for token in SPECIAL_TOKENS] + [bytes([b]) for b in range(256)]
        )
        texts = tf.strings.reduce_join(tf.gather(table, ids), axis=-1)
        return tf.strings.unicode_transcode(
            texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD,
            replace_control_characters=False,
        )
