"""Strings -> masked-language-model examples and fill-mask inputs."""

import keras

# Preprocessing is TensorFlow string and ragged ops (see preprocessor.py).
import tensorflow as tf

from keras_attn.preprocessors.classifier_preprocessor import ClassifierPreprocessor
from keras_attn.tokenizers import MASK_TOKEN
from keras_attn.utils.arguments import check_rate


@keras.saving.register_keras_serializable(package="keras_attn")
class MaskedLMPreprocessor(ClassifierPreprocessor):
    """Text for masked-language-model pretraining (Devlin et al. 2019).

    Texts are packed as `[CLS] text [SEP]` (see `ClassifierPreprocessor`).
    A share `mask_rate` of the real, non-special tokens is selected at
    random; 80% of those become `[MASK]`, 10% a random token, 10% stay, and
    the labels hold the original ids there (the tokenizer's `pad_id`,
    ignored by the loss, elsewhere: a special token, so never a target).
    The draws are stateless: the same `seed` gives the same masking, in
    `tf.data` and eagerly alike.

    `fill_mask_inputs(texts)` reads the literal `[MASK]` in each text as a
    mask token (whatever the tokenizer), for `MaskedLanguageModel.fill_mask`
    and the exported `fill_mask` signature.

    Args:
        tokenizer: a `keras_attn.tokenizers` tokenizer.
        sequence_length: the encoder's `sequence_length`.
        mask_rate: share of real tokens to predict.

    Call arguments:
        texts: 1-D strings.
        seed: int `(2,)` seed of the masking.

    Returns:
        `(inputs, labels)`: the `ClassifierPreprocessor` dict with masked
        `token_ids`, and int32 labels `(batch, sequence_length)`.

    Example:
    >>> from keras_attn.tokenizers import ByteTokenizer
    >>> preprocessor = MaskedLMPreprocessor(ByteTokenizer(), 8, mask_rate=0.5)
    >>> inputs, labels = preprocessor(["abcdef"], seed=[1, 2])
    >>> inputs["token_ids"].numpy().tolist()  # [CLS] a b c d e f [SEP], masked
    [[5, 6, 105, 6, 6, 108, 6, 4]]
    >>> labels.numpy().tolist()  # the original ids where a token was selected
    [[0, 104, 0, 106, 107, 0, 109, 0]]
    >>> preprocessor.fill_mask_inputs(["a[MASK]c"])["token_ids"].numpy().tolist()
    [[5, 104, 6, 106, 4, 0, 0, 0]]
    """

    config_keys = ("sequence_length", "mask_rate")

    def __init__(self, tokenizer, sequence_length, mask_rate=0.15, **kwargs):
        super().__init__(tokenizer, sequence_length, **kwargs)
        self.mask_rate = check_rate("mask_rate", mask_rate)

    def _masked_examples(self, texts, seed):
        inputs = self._inputs(texts)
        masked, labels = self._mask_ids(inputs["token_ids"], seed)
        return dict(inputs, token_ids=masked), labels

    def mask_ids(self, token_ids, seed=(0, 0)):
        """The 80/10/10 masking of packed ids `(batch, length)`.

        Returns `(masked_ids, labels)`, int32: labels hold the original id
        where a token was selected and the tokenizer's `pad_id` elsewhere.
        Special tokens are never selected.
        """
        return self._graph(
            "mask_ids", self._mask_ids, tf.cast(token_ids, tf.int32), tf.cast(seed, tf.int64)
        )

    def _mask_ids(self, token_ids, seed):
        tokenizer = self.tokenizer
        seed = tf.cast(seed, tf.int64)
        shape = tf.shape(token_ids)
        special = tf.reduce_any(
            tf.equal(token_ids[..., None], tf.constant(tokenizer.special_ids, tf.int32)), axis=-1
        )
        selected = (tf.random.stateless_uniform(shape, seed) < self.mask_rate) & ~special
        action = tf.random.stateless_uniform(shape, seed + [0, 1])
        # A random replacement is any token but a special one, wherever the
        # vocabulary keeps its special tokens (ids 0-6 here, BERT's 0 and
        # 100-103): draw an index among the others.
        special_ids = set(tokenizer.special_ids)
        ordinary = [i for i in range(tokenizer.vocabulary_size) if i not in special_ids]
        random_tokens = tf.gather(
            tf.constant(ordinary, tf.int32),
            tf.random.stateless_uniform(
                shape, seed + [0, 2], minval=0, maxval=len(ordinary), dtype=tf.int32
            ),
        )
        labels = tf.where(selected, token_ids, tokenizer.pad_id)
        masked = tf.where(selected & (action < 0.8), tokenizer.mask_id, token_ids)
        masked = tf.where(selected & (action >= 0.8) & (action < 0.9), random_tokens, masked)
        return masked, labels

    def call(self, texts, seed=(0, 0)):
        return self._graph("masked", self._masked_examples, texts, tf.cast(seed, tf.int64))

    def _fill_mask_inputs(self, texts):
        return self._pack_single(self._fill_mask_ids(texts))[0]

    def _fill_mask_ids(self, texts):
        """Ragged ids of texts whose literal `[MASK]`s become mask ids."""
        tokenizer = self.tokenizer
        # Tokenize the text between literal [MASK]s, then put mask ids back
        # between the pieces.
        pieces = tf.strings.split(texts, sep=MASK_TOKEN)  # (batch, pieces)
        piece_ids = tokenizer.tokenize(pieces.flat_values)  # (all pieces, None)
        is_last = tf.equal(
            tf.range(tf.size(pieces.flat_values, out_type=tf.int64)) + 1,
            tf.gather(pieces.row_limits(), pieces.value_rowids()),
        )
        mask_column = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(1 - tf.cast(is_last, tf.int64))], tokenizer.mask_id),
            1 - tf.cast(is_last, tf.int64),
        )
        piece_ids = tf.concat(
            [piece_ids, tf.cast(mask_column.with_row_splits_dtype(piece_ids.row_splits.dtype),
                                piece_ids.dtype)],
            axis=1,
        )
        return tf.RaggedTensor.from_row_splits(piece_ids, pieces.row_splits).merge_dims(1, 2)

    def fill_mask_inputs(self, texts):
        """Encoder inputs of texts whose literal `[MASK]`s become mask ids."""
        return self._graph("fill_mask", self._fill_mask_inputs, texts)

    def fill_mask_truncated(self, texts):
        """Tokens `fill_mask_inputs` cuts from each text (a literal `[MASK]`
        counts as one token): int32 numpy `(batch,)`."""
        return self._graph(
            "fill_mask_truncated",
            lambda batch: self._pack_single(self._fill_mask_ids(batch))[1],
            texts,
        ).numpy()

    def detokenize(self, ids):
        """`tf.string` `(batch,)` of ragged or dense ids."""
        return self.tokenizer.detokenize(ids)
