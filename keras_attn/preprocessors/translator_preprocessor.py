"""Source and target strings <-> the inputs and outputs of an encoder-decoder."""

import keras

# Preprocessing is TensorFlow string and ragged ops (see preprocessor.py).
import tensorflow as tf

from keras_attn.preprocessors import text_graph
from keras_attn.preprocessors.preprocessor import Preprocessor, pack_sentence
from keras_attn.tokenizers import pack
from keras_attn.utils.arguments import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attn")
class TranslatorPreprocessor(Preprocessor):
    """Text for a `Seq2SeqBackbone`.

    Sources become `tokens [EOS]` (`[BOS] tokens [EOS]` with `source_bos`,
    as BART reads them), cut at the end (keeping `[EOS]`) and padded to
    `source_length`. For training (`call`), targets become
    `[BOS] tokens [EOS]` packed to `target_length + 1`: the decoder reads
    `[BOS] target` (`target_ids`) and predicts `target [EOS]` (labels,
    weighted 1 on real tokens). `translations` turns decoded buffers (`[BOS]`
    first) back into text.

    Args:
        source_tokenizer, target_tokenizer: `keras_attn.tokenizers`
            tokenizers (the same object for a shared vocabulary).
        source_length, target_length: the backbone's lengths.
        source_bos: start every source with `[BOS]`. Default `False`.

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
    config_keys = ("source_length", "target_length", "source_bos")

    def __init__(
        self, source_tokenizer, target_tokenizer, source_length, target_length,
        source_bos=False, **kwargs,
    ):
        super().__init__(**kwargs)
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.source_length = check_positive_int("source_length", source_length)
        self.target_length = check_positive_int("target_length", target_length)
        self.source_bos = bool(source_bos)

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

    def _pack_targets(self, texts):
        tokenizer = self.target_tokenizer
        return pack_sentence(tokenizer, tokenizer.tokenize(texts), self.target_length + 1)

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
        tokenizer = self.target_tokenizer
        return text_graph.prepend(tokenizer.tokenize(texts), tokenizer.bos_id)

    def decoder_ids(self, texts):
        """Ragged int32 `(batch, None)`: `[BOS] tokens` of each target text,
        the decoder's inputs when it reads (rather than writes) them."""
        return self._graph("decoder_ids", self._decoder_ids, texts)

    def _truncated(self, sources, targets):
        return self._pack_sources(sources)[1], self._pack_targets(targets)[2]

    def _translations(self, output):
        # Position 0 holds [BOS]; a translation runs to [EOS] or padding.
        tokenizer = self.target_tokenizer
        rows, length = tf.shape(output)[0], tf.shape(output)[1]
        starts, ends = tf.ones([rows], tf.int32), tf.fill([rows], length)
        ids = text_graph.tokens_between(
            output, starts, ends, (tokenizer.eos_id, tokenizer.pad_id)
        )
        return tokenizer.detokenize(ids)

    def translations(self, output):
        """`tf.string` `(batch,)` of decoded target buffers `(batch, length)`."""
        return self._graph("translations", self._translations, output)
