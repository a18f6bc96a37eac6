"""Strings (and sentence pairs) -> the inputs of an encoder classifier."""

import keras

# Preprocessing is TensorFlow string and ragged ops (see preprocessor.py).
import tensorflow as tf

from keras_attn.preprocessors.preprocessor import Preprocessor
from keras_attn.tokenizers import pack, pack_pair
from keras_attn.utils.arguments import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attn")
class ClassifierPreprocessor(Preprocessor):
    """Text for an `EncoderBackbone`: `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`.

    A single text is cut at its end, keeping the closing `[SEP]`; a pair
    loses tokens from the longer segment first (see
    `keras_attn.tokenizers.pack_pair`). Segment ids are 0 for `[CLS] a [SEP]`
    and 1 for `b [SEP]`.

    Args:
        tokenizer: a `keras_attn.tokenizers` tokenizer.
        sequence_length: the encoder's `sequence_length`.

    Call arguments:
        texts: 1-D strings.
        text_pairs: optional 1-D strings, the second segments.

    Returns:
        dict of `token_ids` int32, `segment_ids` int32 and `padding_mask`
        bool, each `(batch, sequence_length)`.

    Example:
    >>> from keras_attn.tokenizers import ByteTokenizer
    >>> preprocessor = ClassifierPreprocessor(ByteTokenizer(), sequence_length=6)
    >>> inputs = preprocessor(["ab"], ["c"])
    >>> inputs["token_ids"].numpy().tolist(), inputs["segment_ids"].numpy().tolist()
    ([[5, 104, 105, 4, 106, 4]], [[0, 0, 0, 0, 1, 1]])
    """

    config_keys = ("sequence_length",)

    def __init__(self, tokenizer, sequence_length, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.sequence_length = check_positive_int("sequence_length", sequence_length)

    def _pack_single(self, ids):
        """`[CLS] ids [SEP]` of ragged ids: `(inputs, truncated)`."""
        tokenizer = self.tokenizer
        token_ids, padding_mask, truncated = pack(
            ids,
            self.sequence_length,
            add_bos=True,
            add_eos=True,
            bos_id=tokenizer.cls_id,
            eos_id=tokenizer.sep_id,
            pad_id=tokenizer.pad_id,
        )
        inputs = {
            "token_ids": token_ids,
            "segment_ids": tf.zeros_like(token_ids),
            "padding_mask": padding_mask,
        }
        return inputs, truncated

    def _pack(self, texts, text_pairs=None):
        tokenizer = self.tokenizer
        if text_pairs is None:
            return self._pack_single(tokenizer.tokenize(texts))
        token_ids, segment_ids, padding_mask, truncated = pack_pair(
            tokenizer.tokenize(texts),
            tokenizer.tokenize(text_pairs),
            self.sequence_length,
            cls_id=tokenizer.cls_id,
            sep_id=tokenizer.sep_id,
            pad_id=tokenizer.pad_id,
        )
        inputs = {
            "token_ids": token_ids,
            "segment_ids": segment_ids,
            "padding_mask": padding_mask,
        }
        return inputs, truncated

    def _inputs(self, texts, text_pairs=None):
        return self._pack(texts, text_pairs)[0]

    def call(self, texts, text_pairs=None):
        if text_pairs is None:
            return self._graph("single", self._inputs, texts)
        return self._graph("pairs", self._inputs, texts, text_pairs)

    def _truncated(self, texts, text_pairs=None):
        return self._pack(texts, text_pairs)[1]
