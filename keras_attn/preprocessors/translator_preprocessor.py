"""Source and target strings <-> the inputs and outputs of an encoder-decoder."""

import keras

# Preprocessing is TensorFlow string and ragged ops (see preprocessor.py).
import tensorflow as tf

from keras_attn.preprocessors import text_graph
from keras_attn.preprocessors.preprocessor import Preprocessor
from keras_attn.tokenizers import pack
from keras_attn.utils.arguments import check_non_negative_int, check_positive_int


def check_start_ids(name, start_ids, target_length=None):
    """`start_ids` (a non-empty sequence of ids >= 0) as a tuple of ints;
    with `target_length`, fewer than it (room for one generated token)."""
    if isinstance(start_ids, (str, bytes)) or not hasattr(start_ids, "__len__"):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of token ids. Received: {name}={start_ids!r}"
        )
    start_ids = tuple(check_non_negative_int(name, value) for value in start_ids)
    if not start_ids or (target_length is not None and len(start_ids) >= target_length):
        bound = f" and shorter than target_length ({target_length})" if target_length else ""
        raise ValueError(f"`{name}` must be non-empty{bound}. Received: {name}={start_ids!r}")
    return start_ids


@keras.saving.register_keras_serializable(package="keras_attn")
class TranslatorPreprocessor(Preprocessor):
    """Text for a `Seq2SeqBackbone`.

    Sources become `tokens [EOS]` (`[BOS] tokens [EOS]` with `source_bos`,
    as BART reads them), cut at the end (keeping `[EOS]`) and padded to
    `source_length`. Targets start with `target_start_ids` (default one
    `[BOS]`; BART's are `</s> <s>`). For training (`call`), targets become
    `start tokens [EOS]` packed to `target_length + 1`: the decoder reads all
    but the last (`target_ids`) and predicts all but the first (labels,
    weighted 1 on real tokens, later start ids included, as keras-hub's BART
    preprocessor weights them). `translations` turns decoded buffers (the
    start ids first) back into text.

    Args:
        source_tokenizer, target_tokenizer: `keras_attn.tokenizers`
            tokenizers (the same object for a shared vocabulary).
        source_length, target_length: the backbone's lengths.
        source_bos: start every source with `[BOS]`. Default `False`.
        target_start_ids: the ids every target starts with, the decoder's
            first inputs: a non-empty sequence shorter than `target_length`.
            Default `None`: `(target_tokenizer.bos_id,)`.

    Example:
    >>> from keras_attn.tokenizers import ByteTokenizer
    >>> byte = ByteTokenizer()
    >>> preprocessor = TranslatorPreprocessor(byte, byte, source_length=4, target_length=4)
    >>> inputs, labels, weights = preprocessor(["ab"], ["c"])
    >>> inputs["source_ids"].numpy().tolist(), inputs["target_ids"].numpy().tolist()
    ([[104, 105, 3, 0]], [[2, 106, 3, 0]])
    >>> labels.numpy().tolist(), weights.numpy().tolist()
    ([[106, 3, 0, 0]], [[1.0, 1.0, 0.0, 0.0]])
    """

    tokenizer_names = ("source_tokenizer", "target_tokenizer")
    config_keys = ("source_length", "target_length", "source_bos", "target_start_ids")

    def __init__(
        self, source_tokenizer, target_tokenizer, source_length, target_length,
        source_bos=False, target_start_ids=None, **kwargs,
    ):
        super().__init__(**kwargs)
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.source_length = check_positive_int("source_length", source_length)
        self.target_length = check_positive_int("target_length", target_length)
        self.source_bos = bool(source_bos)
        if target_start_ids is None:
            target_start_ids = (target_tokenizer.bos_id,)
        self.target_start_ids = check_start_ids(
            "target_start_ids", target_start_ids, self.target_length
        )

    def _pack_sources(self, texts):
        tokenizer = self.source_tokenizer
        ids, _, truncated = pack(
            tokenizer.tokenize(texts),
            self.source_length,
            add_bos=self.source_bos,
            bos_id=tokenizer.bos_id,
            add_eos=True,
            eos_id=tokenizer.eos_id,
            pad_id=tokenizer.pad_id,
        )
        return ids, truncated

    def _start_columns(self, rows):
        """int32 `(rows, len(target_start_ids))`: the start ids on every row."""
        start = tf.constant(self.target_start_ids, tf.int32)[None, :]
        return tf.tile(start, tf.stack([rows, 1]))

    def _pack_targets(self, texts):
        # `start tokens [EOS]` packed to `target_length + 1`: the start ids
        # before `tokens [EOS]` packed to the rest (cut at the end, `[EOS]` kept).
        tokenizer = self.target_tokenizer
        ids, mask, truncated = pack(
            tokenizer.tokenize(texts),
            self.target_length + 1 - len(self.target_start_ids),
            add_eos=True,
            eos_id=tokenizer.eos_id,
            pad_id=tokenizer.pad_id,
        )
        start = self._start_columns(tf.shape(ids)[0])
        ids = tf.concat([start, ids], axis=1)
        mask = tf.concat([tf.ones_like(start, tf.bool), mask], axis=1)
        return ids, mask, truncated

    def _examples(self, sources, targets):
        source_ids, _ = self._pack_sources(sources)
        target, mask, _ = self._pack_targets(targets)
        inputs = {"source_ids": source_ids, "target_ids": target[:, :-1]}
        return inputs, target[:, 1:], tf.cast(mask[:, 1:], tf.float32)

    def call(self, sources, targets):
        """`({"source_ids", "target_ids"}, labels, sample_weight)` for `fit`."""
        return self._graph("examples", self._examples, sources, targets)

    def source_ids(self, texts):
        """`(source_ids (batch, source_length) int32, truncated (batch,) int32)`."""
        return self._graph("sources", self._pack_sources, texts)

    def _decoder_ids(self, texts):
        return text_graph.prepend(
            self.target_tokenizer.tokenize(texts), self.target_start_ids
        )

    def decoder_ids(self, texts):
        """Ragged int32 `(batch, None)`: `start tokens` of each target text,
        the decoder's inputs when it reads (rather than writes) them."""
        return self._graph("decoder_ids", self._decoder_ids, texts)

    def _truncated(self, sources, targets):
        return self._pack_sources(sources)[1], self._pack_targets(targets)[2]

    def _translations(self, output):
        # The start ids lead; a translation runs to [EOS] or padding.
        tokenizer = self.target_tokenizer
        rows, length = tf.shape(output)[0], tf.shape(output)[1]
        starts = tf.fill([rows], len(self.target_start_ids))
        ends = tf.fill([rows], length)
        ids = text_graph.tokens_between(
            output, starts, ends, (tokenizer.eos_id, tokenizer.pad_id)
        )
        return tokenizer.detokenize(ids)

    def translations(self, output):
        """`tf.string` `(batch,)` of decoded target buffers `(batch, length)`."""
        return self._graph("translations", self._translations, output)
