"""GPT-style text generator: a `DecoderBackbone` with its tokenizer."""

import math
import random
import warnings

import keras
import numpy as np

# The decoding endpoints are TensorFlow graphs (see keras_attn.models.serving).
import tensorflow as tf
from keras import ops

from keras_attn.generation import sample
from keras_attn.generation.decoding import check_prompts
from keras_attn.generation.logits_processors import check_repetition_controls
from keras_attn.generation.sampling import check_sampling_options
from keras_attn.models import serving
from keras_attn.models.converters.gpt2 import convert_gpt2_backbone, convert_gpt2_tokenizer
from keras_attn.models.converters.keras_hub_checkpoints import (
    check_backbone_class,
    keras_hub_parts,
)
from keras_attn.models.converters.llama import convert_llama_backbone, convert_llama_tokenizer
from keras_attn.models.decoder_backbone import DecoderBackbone
from keras_attn.models.evaluation import in_batches, limit_examples, token_scores
from keras_attn.models.generator_presets import GENERATOR_PRESETS
from keras_attn.models.task import (
    AttentionKind,
    Task,
    TextInputs,
    check_bucketing,
    check_tokenizer_fits,
    deserialize_part,
    length_bucketed,
    pad_ragged_ids,
    preprocessed_arrays,
    real_length,
    token_strings,
    tokenizer_and_vocabulary,
)
from keras_attn.preprocessors import (
    GeneratorPreprocessor,
    report_truncation,
    text_column,
    text_dataset,
)
from keras_attn.training.metrics import Perplexity
from keras_attn.utils.arguments import (
    check_ids_in_range,
    check_non_negative_int,
    check_positive_int,
    check_same_length,
    concrete_value,
    is_python_number,
)
from keras_attn.utils.keras_compat import without_keras_mask
from keras_attn.utils.untracked import Untracked

# Decoding buffers are rounded up to a multiple of this, so prompts of
# similar lengths share one compiled decoding loop.
_LENGTH_BUCKET = 16
# Exported `serving_default`: new tokens per prompt unless given at export.
DEFAULT_MAX_NEW_TOKENS = 32

# keras-hub backbone class name -> (backbone converter, tokenizer converter):
# the checkpoints `Generator.from_keras_hub` reads. A backbone converter
# takes the keras-hub backbone and `from_keras_hub`'s keyword options; a
# tokenizer converter the keras-hub tokenizer.
KERAS_HUB_CONVERTERS = {
    "GPT2Backbone": (convert_gpt2_backbone, convert_gpt2_tokenizer),
    "LlamaBackbone": (convert_llama_backbone, convert_llama_tokenizer),
}


@keras.saving.register_keras_serializable(package="keras_attn")
class Generator(Task):
    """A causal language model that turns prompts into continuations.

    Trains with `model.fit` on `(token_ids, next_token_ids, weights)` batches
    (`make_dataset` builds them from raw text) and generates with
    `generate(prompts, ...)`: greedy, temperature, top-k and top-p sampling,
    stop tokens, an n-gram ban and a repetition penalty, mixed-length
    batches. Decoding is one compiled
    (`jit_compile`) loop over fixed-size key/value caches; calls with the
    same batch size and length bucket reuse it without retracing, whatever
    the sampling options.

    Args:
        backbone: a `DecoderBackbone`.
        tokenizer: a `keras_attn.tokenizers` tokenizer whose ids fit the
            backbone's vocabulary.

    Example:
    >>> generator = Generator.from_preset("tiny", sequence_length=32)  # byte-level
    >>> generator.compile()  # its loss and metrics, XLA
    >>> texts = ["abcdefgh", "bcdefghi", "cdefghij"] * 16
    >>> _ = generator.fit(generator.make_dataset(texts, batch_size=16), epochs=1, verbose=0)
    >>> continuation = generator.generate("Once upon", max_new_tokens=8, top_p=0.9, seed=1)
    >>> isinstance(continuation, str)
    True
    """

    presets = GENERATOR_PRESETS
    backbone_cls = DecoderBackbone
    task_name = "generator"
    data_task = "generation"
    evaluation_options = (
        "prompt_length", "prompt_until", "continuation_length", "max_new_tokens"
    )
    attention_kinds = {
        "decoder": AttentionKind(
            "tokens", "tokens", "attention_scores", "head_mask", "head_counts",
            "attention_multiplier",
        )
    }

    def __init__(self, backbone, tokenizer, **kwargs):
        super().__init__(**kwargs)
        backbone = deserialize_part(backbone)
        tokenizer = deserialize_part(tokenizer)
        check_tokenizer_fits(tokenizer, backbone.vocabulary_size)
        self.backbone = backbone
        self.tokenizer = tokenizer
        # The compiled decoder: not saved.
        self._untracked = Untracked()
        # (batch size, buffer length) of the decoding loops compiled so far.
        self._untracked.buffers = set()
        # Derived from the tokenizer and the backbone: not tracked or saved.
        object.__setattr__(
            self, "preprocessor", GeneratorPreprocessor(tokenizer, backbone.sequence_length)
        )
        # Every sublayer is built above: weights exist before any call.
        self.built = True

    @classmethod
    def from_parts(cls, backbone_config, tokenizers, **task_args):
        tokenizer, backbone_config = tokenizer_and_vocabulary(
            tokenizers.get("tokenizer"), backbone_config
        )
        return cls(DecoderBackbone(**backbone_config), tokenizer, **task_args)

    @classmethod
    def from_keras_hub(cls, preset_or_model, tokenizer=None, **kwargs):
        """A `Generator` with the weights and tokenizer of a keras-hub
        checkpoint, computing the same logits (float32).

        Families: `KERAS_HUB_CONVERTERS` (GPT-2: `GPT2Backbone`; LLaMA:
        `LlamaBackbone`, rotary positions, grouped-query attention, RMSNorm,
        SwiGLU, no biases).

        Args:
            preset_or_model: a keras-hub preset name or handle (keras-hub
                downloads it, which needs the internet; failing, a one-line
                `OSError`), or a built keras-hub backbone or causal LM
                (offline).
            tokenizer: the checkpoint's keras-hub tokenizer, needed with a
                bare backbone; or a keras-attn tokenizer to use as is.
            **kwargs: options of the family's backbone converter, e.g.
                `sequence_length` (GPT-2: default the checkpoint's longest, a
                shorter one decodes faster; LLaMA: default 2048, its positions
                have no limit) and `dropout` for GPT-2, `dtype` for LLaMA.

        Example (keras-hub downloads the checkpoint; see
        tests/models/converters/test_gpt2.py for an offline one)::

            generator = Generator.from_keras_hub("gpt2_base_en", sequence_length=256)
            generator.generate("The Keras library", max_new_tokens=16)
        """
        from keras_attn.tokenizers.tokenizer import Tokenizer

        given = tokenizer if isinstance(tokenizer, Tokenizer) else None
        hub_backbone, hub_tokenizer = keras_hub_parts(
            preset_or_model, None if given is not None else tokenizer
        )
        convert_backbone, convert_tokenizer = check_backbone_class(
            hub_backbone, KERAS_HUB_CONVERTERS, "Generator.from_keras_hub"
        )
        if given is None and hub_tokenizer is None:
            raise ValueError(
                "Generator.from_keras_hub needs the checkpoint's tokenizer: pass `tokenizer=` "
                "(a keras-hub tokenizer) with a bare keras-hub backbone, or pass the keras-hub "
                "causal LM or preset name"
            )
        backbone = convert_backbone(hub_backbone, **kwargs)
        return cls(backbone, given if given is not None else convert_tokenizer(hub_tokenizer))

    def call(self, token_ids, training=None):
        return self.logits_from_backbone(
            self.backbone(token_ids, training=training), token_ids, training
        )

    def logits_from_backbone(self, backbone_outputs, inputs, training=None):
        return self.vocabulary_logits(backbone_outputs["sequence_output"])

    def texts_to_inputs(self, texts, targets=None, max_new_tokens=0):
        """`TextInputs` of `[BOS]` + each text + its continuation, kept to
        `sequence_length` tokens; one sequence, `"tokens"`.

        Args:
            texts: prompts.
            targets: continuations to append (text), or
            max_new_tokens: > 0 to append this model's own greedy
                continuation of that many tokens (its ids, as generated).

        Example:
        >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
        >>> batch = generator.texts_to_inputs(["ab", "abc"], targets=["c", "d"])
        >>> batch.inputs["token_ids"].shape, batch.tokens["tokens"][0]
        ((2, 5), ['[BOS]', 'a', 'b', 'c'])
        """
        max_new_tokens = check_non_negative_int("max_new_tokens", max_new_tokens)
        texts = text_column("texts", texts)
        ids = self.preprocessor.prompt_ids(texts)
        if targets is not None and max_new_tokens:
            raise ValueError(
                "Pass either `targets` (continuations to read) or `max_new_tokens` (to "
                f"generate them), not both. Received: max_new_tokens={max_new_tokens}"
            )
        if targets is not None:
            targets = text_column("targets", targets)
            check_same_length("texts", texts, "targets", targets)
            ids = tf.concat([ids, self.tokenizer.tokenize(targets)], axis=1)
        elif max_new_tokens:
            prompts = [text.decode("utf-8") for text in texts.numpy()]
            continuations = self.generate(
                prompts, max_new_tokens=max_new_tokens, stop_token_ids=None, return_ids=True
            )
            continuations = tf.ragged.constant(continuations, dtype=ids.dtype,
                                               row_splits_dtype=ids.row_splits.dtype)
            ids = tf.concat([ids, continuations], axis=1)
        token_ids, lengths, truncated = pad_ragged_ids(
            ids, self.backbone.sequence_length, self.tokenizer.pad_id
        )
        report_truncation(truncated, "texts")
        return TextInputs(
            inputs={"token_ids": token_ids},
            tokens={"tokens": token_strings(self.tokenizer, token_ids, lengths)},
            truncated={"tokens": truncated},
        )

    def vocabulary_logits(self, hidden):
        """float32 next-token logits `(..., vocabulary_size)` from the
        backbone's hidden states, through its (tied or untied) reversible
        token embedding. Softmax and losses run in float32 under mixed
        precision."""
        # Logits of every position are wanted: the padding mask stays behind.
        hidden = without_keras_mask(hidden)
        return ops.cast(self.backbone.token_embedding(hidden, reverse=True), "float32")

    # ---------------------------------------------------------------- data

    def make_dataset(self, texts, batch_size=32, shuffle=True, seed=0, bucketing=True):
        """A `tf.data.Dataset` of `(inputs, targets, weights)` for `fit`.

        Each text becomes `[BOS] tokens [EOS]`, padded or truncated to
        `sequence_length + 1` by `self.preprocessor`; inputs are all but the
        last id, targets all but the first, weights 1 on real target tokens.
        Truncation is reported in `last_truncation` (and warned about).

        `bucketing` (default True): batches of similar lengths, each cut to
        one of a few widths fitted to the data (`keras_attn.data.
        bucketed_batches`), so a step pays for the tokens it has and the
        compiled step is traced once per width. True is 4 buckets, an int
        that many; False pads every batch to `sequence_length` and runs the
        preprocessor inside the pipeline.
        """
        texts = text_column("texts", texts)
        num_buckets = check_bucketing(bucketing)
        self.last_truncation = report_truncation(
            self.preprocessor.count_truncated(texts), "texts"
        )
        if not num_buckets:
            return text_dataset((texts,), self.preprocessor, batch_size, shuffle=shuffle,
                                seed=seed)
        arrays = preprocessed_arrays((texts,), self.preprocessor)
        lengths = real_length(arrays[2] > 0)
        return length_bucketed(arrays, lengths, self.backbone.sequence_length, batch_size,
                               shuffle, seed, num_buckets)

    def dataset_from_data(self, data, batch_size=32, shuffle=True, seed=0, bucketing=True):
        return self.make_dataset(data.texts, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                 bucketing=bucketing)

    def default_metrics(self):
        return super().default_metrics() + [Perplexity(ignore_index=self.ignored_label())]

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
        no_repeat_ngram_size=0,
        repetition_penalty=1.0,
    ):
        """Continues each prompt by up to `max_new_tokens` tokens.

        Args:
            prompts: a string or a list of strings.
            max_new_tokens: tokens to generate per prompt, at most.
            temperature: 0 is greedy decoding; > 0 samples.
            top_k: sample among the `top_k` most likely tokens (0: all).
            top_p: nucleus sampling threshold (1.0: off).
            seed: int seed; the same seed gives the same samples. `None`
                draws one from Python's `random`, which
                `keras.utils.set_random_seed` seeds: runs after the same
                global seed sample the same.
            stop_token_ids: `"eos"` (the tokenizer's end token), `None`, or a
                list of ids that end a row's generation.
            return_ids: return the generated token ids (lists) instead of
                text.
            no_repeat_ngram_size: `n` >= 0; no n-gram of tokens occurs twice
                in a row's tokens (`[BOS]` and prompt included): a token that
                would repeat one is never chosen. 0: off.
            repetition_penalty: CTRL's penalty, a number > 0: the logit of a
                token already in the row is divided by it (multiplied when
                negative) before temperature, top-k and top-p. 1.0: off;
                1.1 to 1.5 is usual against loops.

        Returns:
            The continuation (without the prompt) for each prompt: a string,
            or a list of strings for a list of prompts.

        Example:
        >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
        >>> ids = generator.generate("abc", max_new_tokens=8, stop_token_ids=None,
        ...                          return_ids=True, no_repeat_ngram_size=1)
        >>> len(set(ids)) == len(ids) == 8  # no token twice: n = 1 bans every repeat
        True
        """
        single = isinstance(prompts, str)
        max_new_tokens = check_positive_int("max_new_tokens", max_new_tokens)
        length = self.backbone.sequence_length
        if max_new_tokens >= length:
            raise ValueError(
                f"`max_new_tokens` must be smaller than the model's sequence_length ({length}). "
                f"Received: max_new_tokens={max_new_tokens}"
            )
        stops = self._stop_ids(stop_token_ids)
        check_repetition_controls(no_repeat_ngram_size, repetition_penalty)
        prompt_ids = self.preprocessor.prompt_ids(
            text_column("prompts", [prompts] if single else prompts)
        )
        if prompt_ids.nrows() == 0:
            return []
        room = length - max_new_tokens
        row_lengths = np.minimum(prompt_ids.row_lengths().numpy(), room)
        buffer_length = self._buffer_length(
            len(row_lengths), int(np.max(row_lengths)) + max_new_tokens
        )
        token_ids, prompt_mask, prompt_lengths, truncated = self.preprocessor.pack_prompts(
            prompt_ids, buffer_length, room
        )
        truncated = int(np.sum(truncated))
        if truncated:
            warnings.warn(
                f"{truncated} prompt token(s) dropped from the start of long prompts: a prompt "
                f"may hold at most sequence_length - max_new_tokens = {room} tokens",
                stacklevel=2,
            )
        output = self.generate_ids(
            token_ids,
            prompt_mask,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stop_token_ids=stops,
            no_repeat_ngram_size=no_repeat_ngram_size,
            repetition_penalty=repetition_penalty,
            max_new_tokens=max_new_tokens,
            prefill_length=_bucket(int(np.min(row_lengths)), buffer_length),
        )
        new_ids = self.preprocessor.continuation_ids(
            output, prompt_lengths, prompt_lengths + max_new_tokens, stops
        )
        if return_ids:
            continuations = new_ids.to_list()
        else:
            continuations = [
                text.decode("utf-8", errors="replace")
                for text in self.preprocessor.detokenize(new_ids).numpy()
            ]
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
        no_repeat_ngram_size=0,
        repetition_penalty=1.0,
        max_new_tokens=None,
        prefill_length=None,
    ):
        """The compiled decoding loop on right-padded id buffers.

        The prompts' first positions are written into the caches by one
        parallel pass (the prefill), which projects onto the vocabulary only
        the position the loop needs; the loop then generates one token per
        step and ends once every row has reached its budget or a stop token.
        XLA-compiled unless the model was compiled with `jit_compile=False`
        (as keras-hub's `generate` follows `compile()`).

        Args:
            token_ids: int `(batch, length)`, prompts right-padded with 0.
            prompt_mask: bool `(batch, length)`, True on the prompts.
            temperature, top_k, top_p, seed, no_repeat_ngram_size,
                repetition_penalty: as in `generate`; they are tensors inside
                the compiled loop, so changing them does not recompile.
            stop_token_ids: a tuple of ids (static).
            max_new_tokens: the most tokens generated per row (an int or
                int tensor, scalar or `(batch,)`; a tensor input of the
                compiled loop, changing it does not recompile); `None` fills
                the buffer.
            prefill_length: static int in `[1, length]`, the positions the
                prefill runs over; the loop starts at the end of the shortest
                prompt or of the prefill, whichever comes first. Default: the
                shortest prompt length rounded up to a multiple of 16 (known
                values) or `length`. One compiled loop per value.

        Returns:
            int `(batch, length)`: prompts followed by generated tokens, then
            0 after a stop token and past each row's budget.

        Raises:
            ValueError: for buffers of another rank or shape than
                `(batch, length)` with `length <= sequence_length`, a
                `prompt_mask` row with no prompt token (decoding starts from
                the last prompt token: at least `[BOS]`) or not a prefix, or
                ids outside `[0, vocabulary_size)`. The values are checked
                when known (NumPy or eager inputs); this method is the
                boundary, the compiled loop inside checks nothing.
        """
        token_ids, prompt_mask, _ = check_prompts(token_ids, prompt_mask, 0)
        length = self.backbone.sequence_length
        if token_ids.shape[1] is not None and token_ids.shape[1] > length:
            raise ValueError(
                f"`token_ids` must have at most sequence_length ({length}) positions. "
                f"Received: token_ids with shape {tuple(token_ids.shape)}"
            )
        check_ids_in_range("token_ids", token_ids, self.backbone.vocabulary_size)
        temperature, top_k, top_p = check_sampling_options(temperature, top_k, top_p)
        no_repeat_ngram_size, repetition_penalty = check_repetition_controls(
            no_repeat_ngram_size, repetition_penalty
        )
        buffer_length = token_ids.shape[1]
        if max_new_tokens is None:
            # The buffer's length is budget enough for every row.
            max_new_tokens = buffer_length
        elif is_python_number(max_new_tokens):
            max_new_tokens = check_non_negative_int("max_new_tokens", max_new_tokens)
        prefill_length = self._prefill_length(prompt_mask, prefill_length)
        if seed is None:
            # Python's global generator follows keras.utils.set_random_seed.
            seed = random.randint(0, 2**31 - 1)
        decode = self._decode_function()
        output = decode(
            token_ids,
            prompt_mask,
            ops.convert_to_tensor(temperature, "float32"),
            ops.convert_to_tensor(top_k, "int32"),
            ops.convert_to_tensor(top_p, "float32"),
            ops.convert_to_tensor(seed, "int32"),
            tuple(stop_token_ids),
            ops.convert_to_tensor(no_repeat_ngram_size, "int32"),
            ops.convert_to_tensor(repetition_penalty, "float32"),
            ops.convert_to_tensor(max_new_tokens, "int32"),
            prefill_length,
        )
        self._untracked.buffers.add((int(ops.shape(token_ids)[0]), buffer_length))
        return output

    def _decode_function(self):
        """The compiled `_decode`: XLA unless `compile` chose otherwise
        (`jit_compile=False`, or "auto" for a model XLA does not pay for)."""
        jit_compile = bool(getattr(self, "decoding_jit_compile", True)) if self.compiled else True
        functions = self._untracked.functions
        key = "decode" if jit_compile else "decode_without_xla"
        if key not in functions:
            functions[key] = tf.function(self._decode, jit_compile=jit_compile, autograph=False)
        return functions[key]

    def _buffer_length(self, batch_size, needed):
        """The decoding buffer for `needed` positions: `needed` rounded up
        to a multiple of `_LENGTH_BUCKET`, or a longer buffer already
        compiled for this batch size if at most twice that (the loop stops
        at the budget, so a longer buffer costs little and a new one a
        compilation)."""
        length = self.backbone.sequence_length
        fresh = _bucket(needed, length)
        compiled_lengths = sorted(
            buffer for batch, buffer in self._untracked.buffers
            if batch == batch_size and fresh <= buffer <= 2 * fresh
        )
        return compiled_lengths[0] if compiled_lengths else fresh

    def _prefill_length(self, prompt_mask, prefill_length):
        buffer_length = prompt_mask.shape[1]
        if prefill_length is None:
            mask = concrete_value(prompt_mask)
            if mask is None or buffer_length is None:
                return buffer_length
            return _bucket(int(np.min(np.sum(mask, axis=1))), buffer_length)
        prefill_length = check_positive_int("prefill_length", prefill_length)
        if buffer_length is not None and prefill_length > buffer_length:
            raise ValueError(
                f"`prefill_length` must be at most the buffer length ({buffer_length}). "
                f"Received: prefill_length={prefill_length}"
            )
        return prefill_length

    def _decode(
        self,
        token_ids,
        prompt_mask,
        temperature,
        top_k,
        top_p,
        seed,
        stop_token_ids,
        no_repeat_ngram_size=0,
        repetition_penalty=1.0,
        max_new_tokens=None,
        prefill_length=None,
    ):
        """The decoding graph: a prefill over the first `prefill_length`
        positions (default: the whole buffer) that projects onto the
        vocabulary only the last position of the shortest prompt, then the
        loop of `keras_attn.generation.sample` from there, each row ending
        at its `max_new_tokens` budget or a stop token."""
        batch_size, length = ops.shape(token_ids)[0], token_ids.shape[1]
        prefill_length = prefill_length or length
        # One parallel pass writes the prefill positions into the caches;
        # slots past a row's prompt hold padding until the loop overwrites
        # them, and the causal mask keeps every step from reading slots not
        # yet rewritten.
        hidden, caches = self.backbone.call_with_cache(
            token_ids[:, :prefill_length], self.backbone.empty_caches(batch_size, length), 0
        )
        prompt_lengths = ops.sum(ops.cast(prompt_mask, "int32"), axis=1)
        start_index = ops.minimum(ops.min(prompt_lengths), prefill_length) - 1
        # Only the logits of the position the loop starts from are needed.
        first_logits = self.vocabulary_logits(ops.take(hidden, start_index, axis=1)[:, None])

        def next_fn(ids, caches, index):
            hidden, caches = self.backbone.call_with_cache(ids, caches, index)
            return self.vocabulary_logits(hidden[:, -1:])[:, 0], caches

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
            no_repeat_ngram_size=no_repeat_ngram_size,
            repetition_penalty=repetition_penalty,
            max_new_tokens=max_new_tokens,
            prefill_logits=first_logits[:, 0],
        )
        return output

    # ------------------------------------------------------------ evaluation

    def evaluate_data(self, data, options=None):
        """Perplexity and loss per real token of `data.texts`; with
        `prompt_length` or `prompt_until`, also `continuation_accuracy`
        (exact greedy continuations of each text's prompt)."""
        options = options or {}
        count = limit_examples(options, len(data.texts))
        texts = list(data.texts[:count])
        batch_size = options.get("batch_size") or 64
        scores = token_scores(self, self.make_dataset, (texts,), batch_size)
        metrics = {"perplexity": scores["perplexity"], "loss": scores["loss"], "examples": count}
        sequence_length = self.backbone.sequence_length
        length = options.get("continuation_length")
        if options.get("prompt_length") or options.get("prompt_until"):
            pairs = _continuation_pairs(texts, options)
            if not pairs:
                raise ValueError(
                    "no test text can be split into a prompt and a continuation with "
                    "evaluation.prompt_length / prompt_until"
                )
            needed = length or max(len(rest.encode("utf-8")) for _, rest in pairs) + 1
            max_new_tokens = min(options.get("max_new_tokens") or needed, sequence_length - 1)
            outputs = in_batches(
                lambda chunk: self.generate(
                    chunk,
                    max_new_tokens=max_new_tokens,
                    stop_token_ids=None if length else "eos",
                ),
                [prompt for prompt, _ in pairs],
                batch_size,
            )
            if length:
                outputs = [output[:length] for output in outputs]
            metrics["continuation_accuracy"] = float(
                np.mean([o == rest for o, (_, rest) in zip(outputs, pairs)])
            )
            metrics["continuation_examples"] = len(pairs)
            samples = [f"{p!r} -> {o!r} (expected {r!r})" for o, (p, r) in zip(outputs, pairs)]
        else:
            shown = texts[: options.get("samples", 3)]
            prompts = [text[: max(1, len(text) // 2)] for text in shown]
            max_new_tokens = min(options.get("max_new_tokens") or 32, sequence_length - 1)
            outputs = self.generate(prompts, max_new_tokens=max_new_tokens) if prompts else []
            samples = [f"{p!r} -> {o!r}" for p, o in zip(prompts, outputs)]
        return metrics, samples

    # --------------------------------------------------------------- serving

    def serving_endpoints(self, jit_compile=True, max_new_tokens=None):
        """`serving_default`, `generate` and `logits`.

        - `serving_default(inputs)`: greedy continuations of up to
          `max_new_tokens` tokens (baked in; default 32, at most half the
          model's `sequence_length`) -> `{"texts"}`.
        - `generate(inputs, max_new_tokens, temperature, top_k, top_p,
          seed, no_repeat_ngram_size, repetition_penalty)`: every option of
          `generate` as a scalar input -> `{"texts"}` (0 and 1.0 turn the
          last two off).
        - `logits(token_ids)`: `(batch, sequence_length)` int32 ->
          `{"logits"}`.

        Inside the graph, as in `generate` (the same preprocessor): each
        prompt becomes `[BOS] tokens`, keeping its last `sequence_length -
        max_new_tokens` tokens, in a buffer of the model's static
        `sequence_length`; decoding stops a row at `[EOS]` or after
        `max_new_tokens` tokens (the loop ends as soon as every row is
        done), and only each row's
        window `[prompt_length, prompt_length + max_new_tokens)` is
        returned. `max_new_tokens` inputs are clamped to `[0,
        sequence_length - 1]`; other out-of-range options act as their
        nearest valid value (see `keras_attn.generation.sample`).

        The repetition controls see the same history as in `generate`
        (`[BOS]`, the prompt, the tokens generated so far), so served texts
        equal `generate`'s with the same options.
        """
        length = self.backbone.sequence_length
        if max_new_tokens is None:
            # Leave at least half the buffer to the prompt.
            max_new_tokens = max(1, min(DEFAULT_MAX_NEW_TOKENS, length // 2))
        max_new_tokens = check_positive_int("max_new_tokens", max_new_tokens)
        if max_new_tokens >= length:
            raise ValueError(
                f"`max_new_tokens` must be smaller than the model's sequence_length ({length}). "
                f"Received: max_new_tokens={max_new_tokens}"
            )
        eos = self.tokenizer.eos_id
        preprocessor = self.preprocessor

        def decode(
            token_ids, prompt_mask, budget, temperature, top_k, top_p, seed, no_repeat, penalty
        ):
            return self._decode(
                token_ids, prompt_mask, temperature, top_k, top_p, seed, (eos,),
                no_repeat_ngram_size=no_repeat, repetition_penalty=penalty,
                max_new_tokens=budget,
            )

        decode = serving.compiled_core(decode, jit_compile)

        def continuations(texts, budget, temperature, top_k, top_p, seed, no_repeat, penalty):
            budget = tf.clip_by_value(tf.cast(budget, tf.int32), 0, length - 1)
            token_ids, prompt_mask, prompt_lengths, _ = preprocessor.pack_prompts(
                preprocessor.prompt_ids(texts), length, length - budget
            )
            output = decode(
                token_ids, prompt_mask, budget, temperature, top_k, top_p, seed, no_repeat,
                penalty,
            )
            return preprocessor.detokenize(
                preprocessor.continuation_ids(output, prompt_lengths, prompt_lengths + budget)
            )

        def serve(inputs):
            # Python option values: a greedy-only graph, no sampling branch.
            return {"texts": continuations(inputs, max_new_tokens, 0.0, 0, 1.0, 0, 0, 1.0)}

        def generate(inputs, *options):
            # The options in the order of the signature below.
            return {"texts": continuations(inputs, *options)}

        return [
            serving.Endpoint(serving.SERVING_DEFAULT, serve, [serving.texts_spec()]),
            serving.Endpoint(
                serving.GENERATE,
                generate,
                [
                    serving.texts_spec(),
                    serving.scalar_spec(tf.int32, "max_new_tokens"),
                    serving.scalar_spec(tf.float32, "temperature"),
                    serving.scalar_spec(tf.int32, "top_k"),
                    serving.scalar_spec(tf.float32, "top_p"),
                    serving.scalar_spec(tf.int32, "seed"),
                    *serving.repetition_control_specs(),
                ],
            ),
            serving.logits_endpoint(self, serving.ids_spec(length, "token_ids"), jit_compile),
        ]

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


def _bucket(positions, limit):
    """`positions` rounded up to a multiple of `_LENGTH_BUCKET`, at most `limit`."""
    return min(limit, _LENGTH_BUCKET * max(1, math.ceil(positions / _LENGTH_BUCKET)))


def _continuation_pairs(texts, options):
    """(prompt, expected continuation) of each text the options can split."""
    until = options.get("prompt_until")
    prompt_length = options.get("prompt_length")
    length = options.get("continuation_length")
    pairs = []
    for text in texts:
        if until is not None:
            cut = text.find(until)
            if cut < 0:
                continue
            cut += len(until)
        else:
            cut = prompt_length
        prompt, rest = text[:cut], text[cut:]
        if not prompt or not rest or (length is not None and len(rest) < length):
            continue
        pairs.append((prompt, rest if length is None else rest[:length]))
    return pairs
