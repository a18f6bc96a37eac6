"""Strings <-> the inputs and outputs of a causal language model."""

import keras

# Preprocessing is TensorFlow string and ragged ops (see preprocessor.py).
import tensorflow as tf

from keras_attn.preprocessors import text_graph
from keras_attn.preprocessors.preprocessor import Preprocessor, pack_sentence
from keras_attn.utils.arguments import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attn")
class GeneratorPreprocessor(Preprocessor):
    """Text for a `Generator`: training examples, prompts and continuations.

    Training (`call`): each text becomes `[BOS] tokens [EOS]`, cut at the end
    (keeping `[EOS]`) and padded to `sequence_length + 1`; the model reads
    all but the last id and predicts all but the first.

    Generation: `prompt_ids` makes `[BOS] tokens` per prompt, `pack_prompts`
    keeps each prompt's last tokens that leave room for the new ones and
    right-pads them into a decoding buffer, `continuation_ids` cuts each row's
    generated window at its first stop token, and `detokenize` turns ids back
    into text.

    Args:
        tokenizer: a `keras_attn.tokenizers` tokenizer.
        sequence_length: the model's `sequence_length`.

    Example:
    >>> from keras_attn.tokenizers import ByteTokenizer
    >>> preprocessor = GeneratorPreprocessor(ByteTokenizer(), sequence_length=6)
    >>> x, y, weights = preprocessor(["hi"])
    >>> x.numpy().tolist(), y.numpy().tolist(), weights.numpy().tolist()
    ([[2, 111, 112, 3, 0, 0]], [[111, 112, 3, 0, 0, 0]], [[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    """

    config_keys = ("sequence_length",)

    def __init__(self, tokenizer, sequence_length, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.sequence_length = check_positive_int("sequence_length", sequence_length)

    # -------------------------------------------------------------- training

    def _pack(self, texts):
        return pack_sentence(
            self.tokenizer, self.tokenizer.tokenize(texts), self.sequence_length + 1
        )

    def _examples(self, texts):
        ids, mask, _ = self._pack(texts)
        return ids[:, :-1], ids[:, 1:], tf.cast(mask[:, 1:], tf.float32)

    def call(self, texts):
        """`(token_ids, target_ids, sample_weight)` of a batch of texts, each
        `(batch, sequence_length)`: int32, int32 and float32 (1 on real
        targets)."""
        return self._graph("examples", self._examples, texts)

    def _truncated(self, texts):
        return self._pack(texts)[2]

    # ------------------------------------------------------------ generation

    def _prompt_ids(self, texts):
        return text_graph.prepend(self.tokenizer.tokenize(texts), self.tokenizer.bos_id)

    def prompt_ids(self, texts):
        """Ragged int32 `(batch, None)`: `[BOS] tokens` of each prompt."""
        return self._graph("prompt_ids", self._prompt_ids, texts)

    def pack_prompts(self, prompt_ids, buffer_length, room):
        """Prompts in a right-padded decoding buffer.

        Each prompt keeps its last `room` ids (so `buffer_length - room` new
        tokens fit after the longest one).

        Args:
            prompt_ids: ragged int32 from `prompt_ids`.
            buffer_length: int, the buffer's static length.
            room: int or scalar int tensor, most prompt ids kept per row.

        Returns:
            `(token_ids (B, L) int32, prompt_mask (B, L) bool,
            prompt_lengths (B,) int32, truncated (B,) int32)`.
        """
        lengths = tf.cast(prompt_ids.row_lengths(), tf.int32)
        truncated = tf.maximum(lengths - tf.cast(room, tf.int32), 0)
        kept = text_graph.keep_last(prompt_ids, room)
        token_ids, prompt_mask, prompt_lengths = text_graph.right_padded(
            kept, buffer_length, self.tokenizer.pad_id
        )
        return token_ids, prompt_mask, prompt_lengths, truncated

    def continuation_ids(self, output, starts, ends, stop_token_ids=None):
        """Ragged ids of each row's window `[starts, ends)` of a decoded
        buffer, up to (excluding) the first stop token or padding.

        Args:
            output: int32 `(B, L)` decoded buffer.
            starts, ends: int32 `(B,)`.
            stop_token_ids: ids that end a row (default: `[EOS]`).
        """
        if stop_token_ids is None:
            stop_token_ids = (self.tokenizer.eos_id,)
        stops = tuple(stop_token_ids) + (self.tokenizer.pad_id,)
        return text_graph.tokens_between(output, starts, ends, stops)

    def detokenize(self, ids):
        """`tf.string` `(batch,)` of ragged or dense ids."""
        return self.tokenizer.detokenize(ids)
