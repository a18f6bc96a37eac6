"""Encoder-decoder translator: a `Seq2SeqBackbone` with its tokenizers."""

import keras
import numpy as np

# The decoding endpoints are TensorFlow graphs (see keras_attn.models.serving).
import tensorflow as tf
from keras import ops

from keras_attn.generation import beam_search, sample
from keras_attn.generation.logits_processors import check_repetition_controls
from keras_attn.models import serving
from keras_attn.models.converters.bart import convert_bart_backbone, convert_bart_tokenizer
from keras_attn.models.converters.keras_hub_checkpoints import (
    check_backbone_class,
    keras_hub_parts,
)
from keras_attn.models.evaluation import in_batches, limit_examples
from keras_attn.models.seq2seq_backbone import Seq2SeqBackbone
from keras_attn.models.task import (
    AttentionKind,
    Task,
    TextInputs,
    check_bucketing,
    check_tokenizer_fits,
    compiled,
    deserialize_part,
    length_bucketed,
    pad_ragged_ids,
    preprocessed_arrays,
    real_length,
    token_strings,
    tokenizer_and_vocabulary,
    trim_to_longest,
)
from keras_attn.models.translator_presets import TRANSLATOR_PRESETS
from keras_attn.preprocessors import (
    TranslatorPreprocessor,
    report_truncation,
    text_column,
    text_dataset,
)
from keras_attn.preprocessors.translator_preprocessor import check_start_ids
from keras_attn.training.metrics import corpus_bleu
from keras_attn.utils.arguments import (
    check_choice,
    check_ids_in_range,
    check_number,
    check_number_or_scalar_tensor,
    check_positive_int,
    check_rank,
    check_same_length,
)
from keras_attn.utils.keras_compat import without_keras_mask
from keras_attn.utils.untracked import Untracked

# Beams of the exported `translate` signature unless given at export.
DEFAULT_BEAM_WIDTH = 4

# keras-hub backbone class -> (backbone converter, tokenizer converter, task
# arguments): the checkpoints `Translator.from_keras_hub` reads. A backbone
# converter takes the keras-hub backbone and `from_keras_hub`'s keyword
# options; a tokenizer converter the keras-hub tokenizer. A callable task
# argument is called with the converted tokenizer.
KERAS_HUB_CONVERTERS = {
    # keras-hub packs BART sources as `<s> tokens </s>`, and starts its
    # decoder with `</s> <s>` (in training and in `generate`).
    "BartBackbone": (
        convert_bart_backbone,
        convert_bart_tokenizer,
        {
            "source_bos": True,
            "target_start_ids": lambda tokenizer: (tokenizer.eos_id, tokenizer.bos_id),
        },
    ),
}


@keras.saving.register_keras_serializable(package="keras_attn")
class Translator(Task):
    """Translates text with an encoder-decoder Transformer.

    Trains with `model.fit` on batches from `make_dataset(sources, targets)`
    (teacher forcing: the decoder reads `[BOS] target` and predicts
    `target [EOS]`; `[BOS]` stands for `target_start_ids`), and translates
    with `translate(texts)`: greedy decoding or beam search with a length
    penalty. Both run as one compiled loop over the decoder's self-attention
    caches and cross-attention caches computed once from the encoder output,
    so each new token costs one decoder step; beam search reorders only the
    self-attention caches, never the constant cross-attention ones.

    Args:
        backbone: a `Seq2SeqBackbone`.
        source_tokenizer: tokenizer of the source language.
        target_tokenizer: tokenizer of the target language; defaults to the
            source one (a shared vocabulary).
        source_bos: sources start with `[BOS]` (`[BOS] tokens [EOS]`, as
            BART reads them); default `False` (`tokens [EOS]`).
        target_start_ids: the target ids the decoder starts from, in
            training and decoding: a non-empty sequence of ids shorter than
            the backbone's `target_length`. Default `None`:
            `(target_tokenizer.bos_id,)`; BART's (`from_keras_hub`) are
            `(eos_id, bos_id)`, `</s> <s>`.

    Example:
    >>> translator = Translator.from_preset("tiny", source_length=16, target_length=8,
    ...     num_encoder_layers=1, num_decoder_layers=1)  # byte-level, shared
    >>> translator.compile()  # its loss and metrics, XLA
    >>> sources, targets = ["one", "two", "three"] * 16, ["1", "2", "3"] * 16
    >>> _ = translator.fit(translator.make_dataset(sources, targets, batch_size=16), verbose=0)
    >>> outputs = translator.translate(["twenty one", "two"], beam_width=4)
    >>> len(outputs), all(isinstance(text, str) for text in outputs)
    (2, True)
    """

    presets = TRANSLATOR_PRESETS
    backbone_cls = Seq2SeqBackbone
    tokenizer_names = ("source_tokenizer", "target_tokenizer")
    vocabulary_keys = {
        "source_tokenizer": "source_vocabulary_size",
        "target_tokenizer": "target_vocabulary_size",
    }
    task_name = "translator"
    data_task = "translation"
    evaluation_options = (
        "beam_width", "length_penalty", "no_repeat_ngram_size", "repetition_penalty", "bleu",
        "bleu_tokenize",
    )
    attention_kinds = {
        "encoder": AttentionKind(
            "source", "source", "encoder_attention_scores", "encoder_head_mask",
            "encoder_head_counts", "encoder_attention_multiplier",
        ),
        "decoder": AttentionKind(
            "target", "target", "decoder_attention_scores", "decoder_head_mask",
            "decoder_head_counts", "decoder_attention_multiplier",
        ),
        "cross": AttentionKind(
            "target", "source", "cross_attention_scores", "cross_attention_head_mask",
            "cross_attention_head_counts", "cross_attention_multiplier",
        ),
    }

    def __init__(
        self,
        backbone,
        source_tokenizer,
        target_tokenizer=None,
        source_bos=False,
        target_start_ids=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.source_bos = bool(source_bos)
        self.backbone = deserialize_part(backbone)
        self.source_tokenizer = deserialize_part(source_tokenizer)
        self.target_tokenizer = deserialize_part(target_tokenizer) or self.source_tokenizer
        check_tokenizer_fits(
            self.source_tokenizer, self.backbone.source_vocabulary_size, "source_tokenizer"
        )
        check_tokenizer_fits(
            self.target_tokenizer, self.backbone.target_vocabulary_size, "target_tokenizer"
        )
        if target_start_ids is not None:
            target_start_ids = check_start_ids(
                "target_start_ids", target_start_ids, self.backbone.target_length
            )
            check_ids_in_range(
                "target_start_ids",
                np.asarray(target_start_ids),
                self.backbone.target_vocabulary_size,
                "the target vocabulary size",
            )
        # Compiled decoders by (search, beam width, length): not saved.
        self._untracked = Untracked()
        # Derived from the tokenizers and the backbone: not tracked or saved.
        object.__setattr__(
            self,
            "preprocessor",
            TranslatorPreprocessor(
                self.source_tokenizer,
                self.target_tokenizer,
                self.backbone.source_length,
                self.backbone.target_length,
                source_bos=self.source_bos,
                target_start_ids=target_start_ids,
            ),
        )
        # Every sublayer is built above: weights exist before any call.
        self.built = True

    @classmethod
    def from_parts(cls, backbone_config, tokenizers, **task_args):
        shared = tokenizers.get("tokenizer")
        source, backbone_config = tokenizer_and_vocabulary(
            tokenizers.get("source_tokenizer") or shared, backbone_config, "source_vocabulary_size"
        )
        target, backbone_config = tokenizer_and_vocabulary(
            tokenizers.get("target_tokenizer") or shared or source,
            backbone_config,
            "target_vocabulary_size",
        )
        if source is not target and backbone_config.get("share_embeddings", True):
            backbone_config["share_embeddings"] = False
        return cls(Seq2SeqBackbone(**backbone_config), source, target, **task_args)

    def get_config(self):
        config = super().get_config()
        config["source_bos"] = self.source_bos
        config["target_start_ids"] = list(self.target_start_ids)
        return config

    @property
    def target_start_ids(self):
        """The tuple of target ids every decoder input starts with."""
        return self.preprocessor.target_start_ids

    @classmethod
    def from_keras_hub(cls, preset_or_model, tokenizer=None, **kwargs):
        """A `Translator` with the weights and tokenizer of a keras-hub
        encoder-decoder checkpoint, computing the same logits (float32) and
        the same greedy translations as keras-hub's `generate`.

        Families: `KERAS_HUB_CONVERTERS` (BART: `BartBackbone`, post-norm,
        learned positions per side over one shared, tied token matrix,
        embedding layer norms, erf GELU; sources `<s> tokens </s>`, targets
        `</s> <s> tokens </s>`, decoding from `</s> <s>` to `</s>`).

        Args:
            preset_or_model: a keras-hub preset name or handle (keras-hub
                downloads it, which needs the internet; failing, a one-line
                `OSError`), or a built keras-hub backbone or seq2seq LM
                (offline).
            tokenizer: the checkpoint's keras-hub tokenizer, needed with a
                bare backbone; or a keras-attn tokenizer to use as is (one
                vocabulary for source and target).
            **kwargs: options of the family's backbone converter, e.g.
                `source_length`, `target_length` (default the checkpoint's
                longest, 1024 for BART; shorter ones decode faster) and
                `dropout`.

        Example (keras-hub downloads the checkpoint; see
        tests/models/converters/test_bart.py for an offline one)::

            translator = Translator.from_keras_hub(
                "bart_base_en", source_length=128, target_length=64)
            translator.translate("The quick brown fox.")
        """
        from keras_attn.tokenizers.tokenizer import Tokenizer

        given = tokenizer if isinstance(tokenizer, Tokenizer) else None
        hub_backbone, hub_tokenizer = keras_hub_parts(
            preset_or_model, None if given is not None else tokenizer
        )
        convert_backbone, convert_tokenizer, task_args = check_backbone_class(
            hub_backbone, KERAS_HUB_CONVERTERS, "Translator.from_keras_hub"
        )
        if given is None and hub_tokenizer is None:
            raise ValueError(
                "Translator.from_keras_hub needs the checkpoint's tokenizer: pass `tokenizer=` "
                "(a keras-hub tokenizer) with a bare keras-hub backbone, or pass the keras-hub "
                "seq2seq LM or preset name"
            )
        backbone = convert_backbone(hub_backbone, **kwargs)
        shared = given if given is not None else convert_tokenizer(hub_tokenizer)
        task_args = {
            key: value(shared) if callable(value) else value for key, value in task_args.items()
        }
        return cls(backbone, shared, shared, **task_args)

    @classmethod
    def from_preset(cls, preset, tokenizer=None, **kwargs):
        """As `Task.from_preset`; `tokenizer=` sets one shared tokenizer."""
        if tokenizer is not None:
            kwargs.setdefault("source_tokenizer", tokenizer)
            kwargs.setdefault("target_tokenizer", tokenizer)
        return super().from_preset(preset, **kwargs)

    def call(self, inputs, training=None):
        return self.logits_from_backbone(self.backbone(inputs, training=training), inputs, training)

    def logits_from_backbone(self, backbone_outputs, inputs, training=None):
        return self.vocabulary_logits(backbone_outputs["decoder_sequence_output"])

    def texts_to_inputs(self, texts, targets=None):
        """`TextInputs` of source `texts` and their `targets` (default: this
        model's greedy translations): sequences `"source"` (tokens and
        `[EOS]`) and `"target"` (`target_start_ids` (`[BOS]`) and tokens, the
        decoder's inputs: position `i` predicts target token `i + 1`).

        Example:
        >>> translator = Translator.from_preset("tiny", source_length=16, target_length=8,
        ...     num_encoder_layers=1, num_decoder_layers=1)
        >>> batch = translator.texts_to_inputs(["one two"], targets=["eins"])
        >>> batch.tokens["source"][0][-1], batch.tokens["target"][0]
        ('[EOS]', ['[BOS]', 'e', 'i', 'n', 's'])
        """
        texts = text_column("texts", texts)
        source_ids, source_truncated = self.encode_sources(texts)
        pad_id = self.target_tokenizer.pad_id
        if targets is None:
            # The decoded buffer itself (re-tokenizing its text could differ).
            target_ids = np.asarray(self.translate_ids(source_ids, beam_width=1))
            ends = np.isin(target_ids, (self.target_tokenizer.eos_id, pad_id))
            ends[:, : len(self.target_start_ids)] = False  # BART's start with </s>
            target_lengths = np.where(ends.any(axis=1), ends.argmax(axis=1), ends.shape[1])
            target_ids = np.where(
                np.arange(target_ids.shape[1]) < target_lengths[:, None], target_ids, pad_id
            )
            target_ids = trim_to_longest({"ids": target_ids}, target_lengths)["ids"]
            target_truncated = np.zeros(len(target_ids), "int32")
        else:
            targets = text_column("targets", targets)
            check_same_length("texts", texts, "targets", targets)
            target_ids, target_lengths, target_truncated = pad_ragged_ids(
                self.preprocessor.decoder_ids(targets), self.backbone.target_length, pad_id
            )
        source_lengths = np.sum(source_ids != self.source_tokenizer.pad_id, axis=1)
        source_ids = trim_to_longest({"source_ids": source_ids}, source_lengths)["source_ids"]
        report_truncation(source_truncated, "texts")
        report_truncation(target_truncated, "targets")
        return TextInputs(
            inputs={"source_ids": source_ids, "target_ids": target_ids},
            tokens={
                "source": token_strings(self.source_tokenizer, source_ids, source_lengths),
                "target": token_strings(self.target_tokenizer, target_ids, target_lengths),
            },
            truncated={"source": source_truncated, "target": target_truncated},
        )

    def vocabulary_logits(self, hidden):
        """float32 target-vocabulary logits `(..., target_vocabulary_size)`
        from decoder hidden states, through the backbone's (tied or untied)
        reversible target token embedding."""
        # Logits of every position are wanted: the padding mask stays behind.
        hidden = without_keras_mask(hidden)
        return ops.cast(self.backbone.target_token_embedding(hidden, reverse=True), "float32")

    # ---------------------------------------------------------------- data

    def encode_sources(self, texts):
        """Source ids `(N, source_length)` and tokens truncated per row."""
        ids, truncated = self.preprocessor.source_ids(text_column("texts", texts))
        return ids.numpy(), truncated.numpy()

    def make_dataset(self, sources, targets, batch_size=32, shuffle=True, seed=0,
                     bucketing=True):
        """`({"source_ids", "target_ids"}, labels, weights)` batches for `fit`.

        `target_ids` is `[BOS] target` and `labels` is `target [EOS]`, both
        padded to `target_length`; weights are 1 on real label tokens (see
        `TranslatorPreprocessor`). Truncation is reported in
        `last_truncation` (and warned about).

        `bucketing` (default True): batches of similar lengths, sources and
        targets each cut to one of a few widths fitted to the data (one pair
        of widths per bucket, `keras_attn.data.bucketed_batches`), so a step
        pays for the tokens it has and the compiled step is traced once per
        bucket. True is 4 buckets, an int that many; False pads every batch
        to `source_length` / `target_length` and runs the preprocessor
        inside the pipeline.
        """
        sources, targets = text_column("sources", sources), text_column("targets", targets)
        if sources.shape[0] != targets.shape[0]:
            raise ValueError(
                "`sources` and `targets` must have the same length. Received: "
                f"{sources.shape[0]} sources and {targets.shape[0]} targets"
            )
        num_buckets = check_bucketing(bucketing)
        source_counts, target_counts = self.preprocessor.count_truncated(sources, targets)
        self.last_truncation = {
            "sources": report_truncation(source_counts, "sources"),
            "targets": report_truncation(target_counts, "targets"),
        }
        if not num_buckets:
            return text_dataset(
                (sources, targets), self.preprocessor, batch_size, shuffle=shuffle, seed=seed
            )
        arrays = preprocessed_arrays((sources, targets), self.preprocessor)
        inputs, _, weights = arrays
        # The decoder is causal: positions past the last weighted label
        # change no weighted logit, so they are cut with the padding.
        lengths = {
            "source": real_length(inputs["source_ids"] != self.source_tokenizer.pad_id),
            "target": real_length(weights > 0),
        }
        widths = {"source": self.backbone.source_length, "target": self.backbone.target_length}
        groups = ({"source_ids": "source", "target_ids": "target"}, "target", "target")
        return length_bucketed(arrays, lengths, widths, batch_size, shuffle, seed,
                               num_buckets, groups=groups)

    def dataset_from_data(self, data, batch_size=32, shuffle=True, seed=0, bucketing=True):
        return self.make_dataset(
            data.sources, data.targets, batch_size=batch_size, shuffle=shuffle, seed=seed,
            bucketing=bucketing,
        )

    # --------------------------------------------------------- translation

    def translate(
        self,
        texts,
        beam_width=1,
        length_penalty=0.6,
        max_length=None,
        no_repeat_ngram_size=0,
        repetition_penalty=1.0,
    ):
        """Translates a string or a list of strings.

        Args:
            texts: source text(s).
            beam_width: 1 for greedy decoding, more for beam search.
            length_penalty: GNMT `alpha` for beam search (0 = none).
            max_length: most target tokens to produce (default: the model's
                `target_length` less the `target_start_ids`).
            no_repeat_ngram_size: `n` >= 0; no n-gram of target tokens
                occurs twice in a translation (`[BOS]` included); with beam
                search, in each beam. 0: off.
            repetition_penalty: CTRL's penalty, a number > 0: the logit of
                a target token already produced is divided by it
                (multiplied when negative). 1.0: off.

        Returns:
            The translation(s), in the input's form (string or list).

        A text longer than the model's `source_length` (its `[EOS]`
        included) is cut to fit, with a warning; `last_truncation["texts"]`
        holds the `TruncationReport` of the call.

        Example:
        >>> translator = Translator.from_preset("tiny", source_length=16, target_length=8,
        ...     num_encoder_layers=1, num_decoder_layers=1)
        >>> output = translator.translate("one two", no_repeat_ngram_size=2,
        ...                               repetition_penalty=1.3)
        >>> isinstance(output, str)
        True
        """
        single = isinstance(texts, str)
        check_repetition_controls(no_repeat_ngram_size, repetition_penalty)
        source_ids, truncated = self.encode_sources([texts] if single else texts)
        if len(source_ids) == 0:
            return []
        self.last_truncation = {"texts": report_truncation(truncated, "texts")}
        output = self.translate_ids(
            source_ids,
            beam_width,
            length_penalty,
            max_length,
            no_repeat_ngram_size=no_repeat_ngram_size,
            repetition_penalty=repetition_penalty,
        )
        decoded = [
            text.decode("utf-8", errors="replace")
            for text in self.preprocessor.translations(output).numpy()
        ]
        return decoded[0] if single else decoded

    def translate_ids(
        self,
        source_ids,
        beam_width=1,
        length_penalty=0.6,
        max_length=None,
        search=None,
        no_repeat_ngram_size=0,
        repetition_penalty=1.0,
    ):
        """Compiled decoding from source ids `(batch, source_length)`.

        Args:
            source_ids: int `(batch, source_length)`, as `encode_sources`.
            beam_width, length_penalty, max_length, no_repeat_ngram_size,
                repetition_penalty: as in `translate`.
            search: `"greedy"` or `"beam"`; by default greedy for
                `beam_width=1`, beam search otherwise.

        Returns int `(batch, len(target_start_ids) + max_length)`: the start
        ids (`[BOS]`), the translation, then `[EOS]` and padding. One compiled
        function per search, beam width and buffer length; the length penalty
        and the repetition controls are tensor inputs (changing them does not recompile).

        `source_ids` must be int `(batch, source_length)` with ids in
        `[0, source_vocabulary_size)`, else a `ValueError` (the values are
        checked when known: NumPy or eager inputs; the compiled loop inside
        checks nothing).
        """
        source_ids = self._check_source_ids(source_ids)
        beam_width = check_positive_int("beam_width", beam_width)
        vocabulary_size = self.backbone.target_vocabulary_size
        if beam_width > vocabulary_size:
            raise ValueError(
                f"`beam_width` must be at most the target vocabulary size ({vocabulary_size}). "
                f"Received: beam_width={beam_width}"
            )
        length_penalty = check_number_or_scalar_tensor(
            "length_penalty", length_penalty, check_number
        )
        search = check_choice(
            "search", search or ("greedy" if beam_width == 1 else "beam"), ("greedy", "beam")
        )
        if search == "greedy" and beam_width != 1:
            raise ValueError(f"`search='greedy'` needs beam_width=1. Received: {beam_width}")
        starts = len(self.target_start_ids)
        room = self.backbone.target_length - starts
        if max_length is None:
            max_length = room
        max_length = check_positive_int("max_length", max_length)
        if max_length > room:
            raise ValueError(
                f"`max_length` must be at most target_length ({self.backbone.target_length}) "
                f"less the {starts} target start id(s), {room}. Received: max_length={max_length}"
            )
        no_repeat_ngram_size, repetition_penalty = check_repetition_controls(
            no_repeat_ngram_size, repetition_penalty
        )
        key = (search, beam_width, max_length)
        if key not in self._untracked.functions:
            self._untracked.functions[key] = compiled(
                lambda s, p, n, r: self._decode(
                    s, p, search, beam_width, starts + max_length, n, r
                )
            )
        return self._untracked.functions[key](
            source_ids,
            ops.convert_to_tensor(length_penalty, "float32"),
            ops.convert_to_tensor(no_repeat_ngram_size, "int32"),
            ops.convert_to_tensor(repetition_penalty, "float32"),
        )

    def _check_source_ids(self, source_ids):
        """`source_ids` as int32 `(batch, source_length)` with ids in range."""
        source_ids = ops.convert_to_tensor(source_ids)
        check_rank("source_ids", source_ids.shape, 2, "(batch, source_length)")
        if "int" not in keras.backend.standardize_dtype(source_ids.dtype):
            raise ValueError(
                "`source_ids` must hold integer token ids. Received: source_ids with dtype "
                f"{keras.backend.standardize_dtype(source_ids.dtype)}"
            )
        length = self.backbone.source_length
        if source_ids.shape[1] not in (None, length):
            raise ValueError(
                f"`source_ids` must have shape (batch, source_length={length}), right-padded "
                f"with {self.source_tokenizer.pad_id} as `encode_sources` makes them. Received: "
                f"source_ids with shape {tuple(source_ids.shape)}"
            )
        check_ids_in_range("source_ids", source_ids, self.backbone.source_vocabulary_size)
        return ops.cast(source_ids, "int32")

    # ------------------------------------------------------------ evaluation

    def evaluate_data(self, data, options=None):
        """`exact_match` (output == reference) and, unless `bleu: false`,
        sacreBLEU corpus `bleu` of translating `data.sources` (with the
        options' `beam_width`, `length_penalty`, `no_repeat_ngram_size` and
        `repetition_penalty`)."""
        options = options or {}
        count = limit_examples(options, len(data.sources))
        sources, references = list(data.sources[:count]), list(data.targets[:count])
        beam_width = options.get("beam_width") or 1
        length_penalty = options.get("length_penalty")
        length_penalty = 0.6 if length_penalty is None else length_penalty
        no_repeat_ngram_size = options.get("no_repeat_ngram_size") or 0
        repetition_penalty = options.get("repetition_penalty") or 1.0
        outputs = in_batches(
            lambda chunk: self.translate(
                chunk,
                beam_width=beam_width,
                length_penalty=length_penalty,
                no_repeat_ngram_size=no_repeat_ngram_size,
                repetition_penalty=repetition_penalty,
            ),
            sources,
            options.get("batch_size") or 64,
        )
        metrics = {"exact_match": float(np.mean([o == r for o, r in zip(outputs, references)]))}
        if options.get("bleu", True):
            tokenize = options.get("bleu_tokenize") or "13a"
            metrics["bleu"] = corpus_bleu(outputs, references, tokenize=tokenize)
        metrics.update(beam_width=beam_width, examples=count)
        samples = [
            f"{s!r} -> {o!r} (reference {r!r})" for s, o, r in zip(sources, outputs, references)
        ]
        return metrics, samples

    # --------------------------------------------------------------- serving

    def serving_endpoints(self, jit_compile=True, beam_width=DEFAULT_BEAM_WIDTH):
        """`serving_default`, `translate` and `logits`.

        - `serving_default(inputs)`: greedy translations ->
          `{"translations"}`, as `translate(texts)`.
        - `translate(inputs, length_penalty, no_repeat_ngram_size,
          repetition_penalty)`: beam search with `beam_width` beams (fixed at
          export: the beams are a static axis of the graph) ->
          `{"translations"}`, as `translate(texts, beam_width,
          length_penalty, no_repeat_ngram_size=..., repetition_penalty=...)`
          (0 and 1.0 turn the last two off). `beam_width=1` exports greedy
          decoding (`length_penalty` is unused).
        - `logits({"source_ids", "target_ids"})`: `(batch, source_length)`
          and `(batch, target_length)` int32 -> `{"logits"}`.

        Translations are at most `target_length` less the start ids
        tokens, as in `translate`.
        """
        beam_width = check_positive_int("beam_width", beam_width)
        target_length = self.backbone.target_length
        search = "greedy" if beam_width == 1 else "beam"
        preprocessor = self.preprocessor
        greedy = serving.compiled_core(
            lambda source_ids: self._decode(source_ids, 0.0, "greedy", 1, target_length),
            jit_compile,
        )
        beam = serving.compiled_core(
            lambda source_ids, length_penalty, no_repeat, penalty: self._decode(
                source_ids, length_penalty, search, beam_width, target_length, no_repeat, penalty
            ),
            jit_compile,
        )

        def source_ids(texts):
            return preprocessor.source_ids(texts)[0]

        def serve(inputs):
            return {"translations": preprocessor.translations(greedy(source_ids(inputs)))}

        def translate(inputs, length_penalty, no_repeat_ngram_size, repetition_penalty):
            output = beam(
                source_ids(inputs), length_penalty, no_repeat_ngram_size, repetition_penalty
            )
            return {"translations": preprocessor.translations(output)}

        ids = {
            "source_ids": serving.ids_spec(self.backbone.source_length, "source_ids"),
            "target_ids": serving.ids_spec(target_length, "target_ids"),
        }
        return [
            serving.Endpoint(serving.SERVING_DEFAULT, serve, [serving.texts_spec()]),
            serving.Endpoint(
                serving.TRANSLATE,
                translate,
                [
                    serving.texts_spec(),
                    serving.scalar_spec(tf.float32, "length_penalty"),
                    *serving.repetition_control_specs(),
                ],
            ),
            serving.logits_endpoint(self, ids, jit_compile),
        ]

    def _decode(
        self,
        source_ids,
        length_penalty,
        search,
        beam_width,
        length,
        no_repeat_ngram_size=0,
        repetition_penalty=1.0,
    ):
        batch_size = ops.shape(source_ids)[0]
        encoder_outputs, source_mask = self.backbone.encode(source_ids)
        cross_caches = self.backbone.cross_attention_caches(encoder_outputs)
        # The start ids, a prompt shared by every row, go through the decoder
        # in one parallel step (the prefill); only the last one's logits are
        # projected onto the vocabulary.
        starts = len(self.target_start_ids)
        start_ids = ops.broadcast_to(
            ops.convert_to_tensor([self.target_start_ids], "int32"), (batch_size, starts)
        )
        hidden, self_caches = self.backbone.decode_with_cache(
            start_ids, self.backbone.empty_caches(batch_size, length), cross_caches,
            source_mask, 0,
        )
        first_logits = self.vocabulary_logits(hidden[:, -1:])[:, 0]
        if search == "beam":
            # Beam search reorders its cache nest every step; the constant
            # cross-attention keys and values stay outside it, repeated for
            # the beams once (beam `j` of source `b` is row `b * beams + j`).
            def for_beams(x):
                return ops.repeat(x, beam_width, axis=0)

            cross_caches = keras.tree.map_structure(for_beams, cross_caches)
            source_mask = for_beams(source_mask)

        def next_fn(ids, self_caches, index):
            hidden, self_caches = self.backbone.decode_with_cache(
                ids, self_caches, cross_caches, source_mask, index
            )
            return self.vocabulary_logits(hidden[:, -1:])[:, 0], self_caches

        token_ids = ops.concatenate(
            [start_ids, ops.zeros((batch_size, length - starts), "int32")], axis=1
        )
        prompt_mask = ops.arange(length)[None, :] < starts
        prompt_mask = ops.broadcast_to(prompt_mask, (batch_size, length))
        eos, pad = self.target_tokenizer.eos_id, self.target_tokenizer.pad_id
        if search == "greedy":
            output, _ = sample(
                next_fn,
                token_ids,
                prompt_mask,
                self_caches,
                stop_token_ids=(eos,),
                pad_id=pad,
                start_index=starts - 1,
                no_repeat_ngram_size=no_repeat_ngram_size,
                repetition_penalty=repetition_penalty,
                prefill_logits=first_logits,
            )
        else:
            output, _ = beam_search(
                next_fn,
                token_ids,
                prompt_mask,
                self_caches,
                num_beams=beam_width,
                length_penalty=length_penalty,
                eos_id=eos,
                pad_id=pad,
                start_index=starts - 1,
                no_repeat_ngram_size=no_repeat_ngram_size,
                repetition_penalty=repetition_penalty,
                prefill_logits=first_logits,
            )
        return output
