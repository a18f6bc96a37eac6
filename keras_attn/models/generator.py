"""GPT-style text generator: a `DecoderBackbone` with its tokenizer."""

import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_attn.generation import sample
from keras_attn.models.decoder_backbone import DecoderBackbone
from keras_attn.models.generator_presets import GENERATOR_PRESETS
from keras_attn.models.task import (
    Task,
    check_tokenizer_fits,
    deserialize_part,
    tokenizer_and_vocabulary,
)
from keras_attn.models.text_batches import (
    compiled,
    make_dataset,
    pack_ids,
    ragged,
    report_truncation,
    tokenize_texts,
)
from keras_attn.utils.arguments import check_non_negative_int, check_positive_int

# Decoding buffers are rounded up to a multiple of this, so prompts of
# similar lengths share one compiled decoding loop.
_LENGTH_BUCKET = 16


@keras.saving.register_keras_serializable(package="keras_attn")
class Generator(Task):
    """A causal language model that turns prompts into continuations.

    Trains with `model.fit` on `(token_ids, next_token_ids, weights)` batches
    (`make_dataset` builds them from raw text) and generates with
    `generate(prompts, ...)`: greedy, temperature, top-k and top-p sampling,
    stop tokens, mixed-length batches. Decoding is one compiled
    (`jit_compile`) loop over fixed-size key/value caches; calls with the
    same batch size and length bucket reuse it without retracing, whatever
    the sampling options.

    Args:
        backbone: a `DecoderBackbone`.
        tokenizer: a `keras_attn.tokenizers` tokenizer whose ids fit the
            backbone's vocabulary.

    Example:
    >>> generator = Generator.from_preset("generator_tiny")  # byte-level
    >>> generator.compile(optimizer="adam", loss=..., jit_compile=True)
    >>> generator.fit(generator.make_dataset(texts, batch_size=32), epochs=3)
    >>> generator.generate(["Once upon"], max_new_tokens=20, top_p=0.9, seed=1)
    """

    presets = GENERATOR_PRESETS
    backbone_cls = DecoderBackbone

    def __init__(self, backbone, tokenizer, **kwargs):
        super().__init__(**kwargs)
        backbone = deserialize_part(backbone)
        tokenizer = deserialize_part(tokenizer)
        check_tokenizer_fits(tokenizer, backbone.vocabulary_size)
        self.backbone = backbone
        self.tokenizer = tokenizer
        self._decode_function = None
        # Every sublayer is built above: weights exist before any call.
        self.built = True

    @classmethod
    def from_parts(cls, backbone_config, tokenizers, **task_args):
        tokenizer, backbone_config = tokenizer_and_vocabulary(
            tokenizers.get("tokenizer"), backbone_config
        )
        return cls(DecoderBackbone(**backbone_config), tokenizer, **task_args)

    def call(self, token_ids, training=None):
        hidden = self.backbone(token_ids, training=training)["sequence_output"]
        return self.vocabulary_logits(hidden)

    def vocabulary_logits(self, hidden):
        """float32 next-token logits `(..., vocabulary_size)` from the
        backbone's hidden states, through its (tied or untied) reversible
        token embedding. Softmax and losses run in float32 under mixed
        precision."""
        return ops.cast(self.backbone.token_embedding(hidden, reverse=True), "float32")

    # ---------------------------------------------------------------- data

    def make_dataset(self, texts, batch_size=32, shuffle=True, seed=0):
        """A `tf.data.Dataset` of `(inputs, targets, weights)` for `fit`.

        Each text becomes `[BOS] tokens [EOS]`, padded or truncated to
        `sequence_length + 1`; inputs are all but the last id, targets all but
        the first, weights 1 on real target tokens.
        """
        ids, mask, truncated = pack_ids(
            tokenize_texts(self.tokenizer, texts),
            self.backbone.sequence_length + 1,
            add_bos=True,
            add_eos=True,
            tokenizer=self.tokenizer,
        )
        self.last_truncation = report_truncation(truncated, "texts")
        weights = mask[:, 1:].astype("float32")
        return make_dataset(
            (ids[:, :-1], ids[:, 1:], weights), batch_size, shuffle=shuffle, seed=seed
        )

    # ---------------------------------------------------------- generation

    def generate(
        self,
        prompts,
        max_new_tokens=32,
        temperature=0.0,
        top_k=0,
        top_p=1.0,
        seed=None,
        stop_token_ids="eos",
        return_ids=False,
    ):
        """Continues each prompt by up to `max_new_tokens` tokens.

        Args:
            prompts: a string or a list of strings.
            max_new_tokens: tokens to generate per prompt, at most.
            temperature: 0 is greedy decoding; > 0 samples.
            top_k: sample among the `top_k` most likely tokens (0: all).
            top_p: nucleus sampling threshold (1.0: off).
            seed: int seed; the same seed gives the same samples.
            stop_token_ids: `"eos"` (the tokenizer's end token), `None`, or a
                list of ids that end a row's generation.
            return_ids: return the generated token ids (lists) instead of
                text.

        Returns:
            The continuation (without the prompt) for each prompt: a string,
            or a list of strings for a list of prompts.
        """
        single = isinstance(prompts, str)
        max_new_tokens = check_positive_int("max_new_tokens", max_new_tokens)
        length = self.backbone.sequence_length
        if max_new_tokens >= length:
            raise ValueError(
                f"`max_new_tokens` must be smaller than the model's sequence_length ({length}). "
                f"Received: max_new_tokens={max_new_tokens}"
            )
        rows = tokenize_texts(self.tokenizer, [prompts] if single else prompts)
        rows = [[self.tokenizer.bos_id, *row] for row in rows]
        room = length - max_new_tokens
        truncated = sum(max(0, len(row) - room) for row in rows)
        if truncated:
            warnings.warn(
                f"{truncated} prompt token(s) dropped from the start of long prompts: a prompt "
                f"may hold at most sequence_length - max_new_tokens = {room} tokens",
                stacklevel=2,
            )
            rows = [row[-room:] for row in rows]
        prompt_lengths = np.array([len(row) for row in rows])
        buffer_length = min(
            length,
            _LENGTH_BUCKET * math.ceil((prompt_lengths.max() + max_new_tokens) / _LENGTH_BUCKET),
        )
        token_ids = np.zeros((len(rows), buffer_length), "int32")
        for i, row in enumerate(rows):
            token_ids[i, : len(row)] = row
        prompt_mask = np.arange(buffer_length)[None, :] < prompt_lengths[:, None]

        output = self.generate_ids(
            token_ids,
            prompt_mask,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stop_token_ids=self._stop_ids(stop_token_ids),
        )
        output = ops.convert_to_numpy(output)
        continuations = [
            self._continuation(output[i, n : n + max_new_tokens], stop_token_ids)
            for i, n in enumerate(prompt_lengths)
        ]
        if not return_ids:
            continuations = self._detokenize(continuations)
        return continuations[0] if single else continuations

    def generate_ids(
        self,
        token_ids,
        prompt_mask,
        temperature=0.0,
        top_k=0,
        top_p=1.0,
        seed=None,
        stop_token_ids=(),
    ):
        """The compiled decoding loop on right-padded id buffers.

        Args:
            token_ids: int `(batch, length)`, prompts right-padded with 0.
            prompt_mask: bool `(batch, length)`, True on the prompts.
            temperature, top_k, top_p, seed: as in `generate`; they are
                tensors inside the compiled loop, so changing them does not
                recompile.
            stop_token_ids: a tuple of ids (static).

        Returns:
            int `(batch, length)`: prompts followed by generated tokens, then
            0 after a stop token.
        """
        if seed is None:
            seed = int(np.random.default_rng().integers(0, 2**31 - 1))
        if self._decode_function is None:
            self._decode_function = compiled(self._decode)
        return self._decode_function(
            ops.convert_to_tensor(token_ids, "int32"),
            ops.convert_to_tensor(prompt_mask, "bool"),
            ops.convert_to_tensor(temperature, "float32"),
            ops.convert_to_tensor(top_k, "int32"),
            ops.convert_to_tensor(top_p, "float32"),
            ops.convert_to_tensor(seed, "int32"),
            tuple(stop_token_ids),
        )

    def _decode(
        self,
        token_ids,
        prompt_mask,
        temperature,
        top_k,
        top_p,
        seed,
        stop_token_ids,
        logits_processor=None,
    ):
        """The decoding graph; `logits_processor(logits (B, vocab), index)`,
        if given, edits each step's logits (the exported model uses it to end
        rows at a token budget, see `keras_attn.export`)."""
        batch_size, length = ops.shape(token_ids)[0], token_ids.shape[1]
        # One parallel pass writes the whole buffer into the caches; slots past
        # a row's prompt hold padding until the loop overwrites them, and the
        # causal mask keeps every step from reading slots not yet rewritten.
        _, caches = self.backbone.call_with_cache(
            token_ids, self.backbone.empty_caches(batch_size, length), 0
        )
        start_index = ops.min(ops.sum(ops.cast(prompt_mask, "int32"), axis=1)) - 1

        def next_fn(ids, caches, index):
            hidden, caches = self.backbone.call_with_cache(ids, caches, index)
            logits = self.vocabulary_logits(hidden[:, -1:])[:, 0]
            if logits_processor is not None:
                logits = logits_processor(logits, index)
            return logits, caches

        output, _ = sample(
            next_fn,
            token_ids,
            prompt_mask,
            caches,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stop_token_ids=stop_token_ids,
            pad_id=self.tokenizer.pad_id,
            start_index=start_index,
        )
        return output

    def export_serving(self, path, overwrite=False, max_new_tokens=None, jit_compile=True):
        """Writes a TensorFlow SavedModel that generates from strings.

        Signatures: `serving_default` (greedy, up to `max_new_tokens` new
        tokens), `generate` (every option of `generate` as an input) and
        `logits` (token ids in). Runs without Keras or keras-attn; see
        `keras_attn.export.export`. (`model.export` is Keras' forward-pass
        export.)
        """
        from keras_attn.export import export

        export(
            self, path, overwrite=overwrite, jit_compile=jit_compile, max_new_tokens=max_new_tokens
        )

    def _stop_ids(self, stop_token_ids):
        if stop_token_ids is None:
            return ()
        if isinstance(stop_token_ids, str):
            if stop_token_ids != "eos":
                raise ValueError(
                    "`stop_token_ids` must be 'eos', None or a list of token ids. "
                    f"Received: stop_token_ids={stop_token_ids!r}"
                )
            return (self.tokenizer.eos_id,)
        return tuple(check_non_negative_int("stop_token_ids", int(i)) for i in stop_token_ids)

    def _continuation(self, ids, stop_token_ids):
        stops = set(self._stop_ids(stop_token_ids))
        kept = []
        for token in ids.tolist():
            if token in stops or token == self.tokenizer.pad_id:
                break
            kept.append(token)
        return kept

    def _detokenize(self, rows):
        texts = self.tokenizer.detokenize(ragged(rows))
        return [t.decode("utf-8", errors="replace") for t in ops.convert_to_numpy(texts)]
