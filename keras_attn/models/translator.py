"""Encoder-decoder translator: a `Seq2SeqBackbone` with its tokenizers."""

import keras
from keras import ops

from keras_attn.generation import beam_search, sample
from keras_attn.models.seq2seq_backbone import Seq2SeqBackbone
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
from keras_attn.models.translator_presets import TRANSLATOR_PRESETS
from keras_attn.utils.arguments import check_choice, check_positive_int


@keras.saving.register_keras_serializable(package="keras_attn")
class Translator(Task):
    """Translates text with an encoder-decoder Transformer.

    Trains with `model.fit` on batches from `make_dataset(sources, targets)`
    (teacher forcing: the decoder reads `[BOS] target` and predicts
    `target [EOS]`), and translates with `translate(texts)`: greedy decoding
    or beam search with a length penalty. Both run as one compiled loop over
    the decoder's self-attention caches and cross-attention caches computed
    once from the encoder output, so each new token costs one decoder step.

    Args:
        backbone: a `Seq2SeqBackbone`.
        source_tokenizer: tokenizer of the source language.
        target_tokenizer: tokenizer of the target language; defaults to the
            source one (a shared vocabulary).

    Example:
    >>> translator = Translator.from_preset("tiny")  # byte-level, shared
    >>> translator.fit(translator.make_dataset(sources, targets), epochs=5)
    >>> translator.translate(["twenty one"], beam_width=4)
    """

    presets = TRANSLATOR_PRESETS
    backbone_cls = Seq2SeqBackbone
    tokenizer_names = ("source_tokenizer", "target_tokenizer")

    def __init__(self, backbone, source_tokenizer, target_tokenizer=None, **kwargs):
        super().__init__(**kwargs)
        self.backbone = deserialize_part(backbone)
        self.source_tokenizer = deserialize_part(source_tokenizer)
        self.target_tokenizer = deserialize_part(target_tokenizer) or self.source_tokenizer
        check_tokenizer_fits(
            self.source_tokenizer, self.backbone.source_vocabulary_size, "source_tokenizer"
        )
        check_tokenizer_fits(
            self.target_tokenizer, self.backbone.target_vocabulary_size, "target_tokenizer"
        )
        self._translate_functions = {}
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

    @classmethod
    def from_preset(cls, preset, tokenizer=None, **kwargs):
        """As `Task.from_preset`; `tokenizer=` sets one shared tokenizer."""
        if tokenizer is not None:
            kwargs.setdefault("source_tokenizer", tokenizer)
            kwargs.setdefault("target_tokenizer", tokenizer)
        return super().from_preset(preset, **kwargs)

    def call(self, inputs, training=None):
        hidden = self.backbone(inputs, training=training)["decoder_sequence_output"]
        return self.vocabulary_logits(hidden)

    def vocabulary_logits(self, hidden):
        """float32 target-vocabulary logits `(..., target_vocabulary_size)`
        from decoder hidden states, through the backbone's (tied or untied)
        reversible target token embedding."""
        return ops.cast(self.backbone.target_token_embedding(hidden, reverse=True), "float32")

    # ---------------------------------------------------------------- data

    def encode_sources(self, texts):
        """Source ids `(N, source_length)` and tokens truncated per row."""
        ids, _, truncated = pack_ids(
            tokenize_texts(self.source_tokenizer, texts),
            self.backbone.source_length,
            self.source_tokenizer,
            add_eos=True,
        )
        return ids.astype("int32"), truncated

    def make_dataset(self, sources, targets, batch_size=32, shuffle=True, seed=0):
        """`({"source_ids", "target_ids"}, labels, weights)` batches for `fit`.

        `target_ids` is `[BOS] target` and `labels` is `target [EOS]`, both
        padded to `target_length`; weights are 1 on real label tokens.
        """
        if len(sources) != len(targets):
            raise ValueError(
                "`sources` and `targets` must have the same length. Received: "
                f"{len(sources)} sources and {len(targets)} targets"
            )
        source_ids, source_truncated = self.encode_sources(sources)
        target, mask, target_truncated = pack_ids(
            tokenize_texts(self.target_tokenizer, targets),
            self.backbone.target_length + 1,
            self.target_tokenizer,
            add_bos=True,
            add_eos=True,
        )
        self.last_truncation = {
            "sources": report_truncation(source_truncated, "sources"),
            "targets": report_truncation(target_truncated, "targets"),
        }
        inputs = {"source_ids": source_ids, "target_ids": target[:, :-1].astype("int32")}
        labels = target[:, 1:].astype("int32")
        weights = mask[:, 1:].astype("float32")
        return make_dataset((inputs, labels, weights), batch_size, shuffle=shuffle, seed=seed)

    # --------------------------------------------------------- translation

    def translate(self, texts, beam_width=1, length_penalty=0.6, max_length=None):
        """Translates a string or a list of strings.

        Args:
            texts: source text(s).
            beam_width: 1 for greedy decoding, more for beam search.
            length_penalty: GNMT `alpha` for beam search (0 = none).
            max_length: most target tokens to produce (default: the model's
                `target_length - 1`).

        Returns:
            The translation(s), in the input's form (string or list).
        """
        single = isinstance(texts, str)
        source_ids, _ = self.encode_sources([texts] if single else texts)
        ids = ops.convert_to_numpy(
            self.translate_ids(source_ids, beam_width, length_penalty, max_length)
        )
        eos, pad = self.target_tokenizer.eos_id, self.target_tokenizer.pad_id
        rows = []
        for row in ids[:, 1:]:
            kept = []
            for token in row.tolist():
                if token in (eos, pad):
                    break
                kept.append(token)
            rows.append(kept)
        texts_out = self.target_tokenizer.detokenize(ragged(rows))
        decoded = [t.decode("utf-8", errors="replace") for t in ops.convert_to_numpy(texts_out)]
        return decoded[0] if single else decoded

    def translate_ids(
        self, source_ids, beam_width=1, length_penalty=0.6, max_length=None, search=None
    ):
        """Compiled decoding from source ids `(batch, source_length)`.

        Args:
            source_ids: int `(batch, source_length)`, as `encode_sources`.
            beam_width, length_penalty, max_length: as in `translate`.
            search: `"greedy"` or `"beam"`; by default greedy for
                `beam_width=1`, beam search otherwise.

        Returns int `(batch, max_length + 1)`: `[BOS]`, the translation, then
        `[EOS]` and padding. One compiled function per search, beam width and
        buffer length; the length penalty is a tensor input.
        """
        beam_width = check_positive_int("beam_width", beam_width)
        search = check_choice(
            "search", search or ("greedy" if beam_width == 1 else "beam"), ("greedy", "beam")
        )
        if search == "greedy" and beam_width != 1:
            raise ValueError(f"`search='greedy'` needs beam_width=1. Received: {beam_width}")
        max_length = check_positive_int(
            "max_length", max_length or self.backbone.target_length - 1
        )
        if max_length >= self.backbone.target_length:
            raise ValueError(
                f"`max_length` must be smaller than target_length "
                f"({self.backbone.target_length}). Received: max_length={max_length}"
            )
        key = (search, beam_width, max_length)
        if key not in self._translate_functions:
            self._translate_functions[key] = compiled(
                lambda s, p: self._decode(s, p, search, beam_width, max_length + 1)
            )
        return self._translate_functions[key](
            ops.convert_to_tensor(source_ids, "int32"),
            ops.convert_to_tensor(length_penalty, "float32"),
        )

    def export_serving(self, path, overwrite=False, beam_width=4, jit_compile=True):
        """Writes a TensorFlow SavedModel that translates strings.

        Signatures: `serving_default` (greedy), `translate` (beam search
        with `beam_width` beams, `length_penalty` as an input) and `logits`
        (source and target ids in). Runs without Keras or keras-attn; see
        `keras_attn.export.export`. (`model.export` is Keras' forward-pass
        export.)
        """
        from keras_attn.export import export

        export(self, path, overwrite=overwrite, jit_compile=jit_compile, beam_width=beam_width)

    def _decode(self, source_ids, length_penalty, search, beam_width, length):
        batch_size = ops.shape(source_ids)[0]
        encoder_outputs, source_mask = self.backbone.encode(source_ids)
        cache = (
            self.backbone.empty_caches(batch_size, length),
            self.backbone.cross_attention_caches(encoder_outputs),
            source_mask,
        )

        def next_fn(ids, cache, index):
            self_caches, cross_caches, mask = cache
            hidden, self_caches = self.backbone.decode_with_cache(
                ids, self_caches, cross_caches, mask, index
            )
            return self.vocabulary_logits(hidden[:, -1:])[:, 0], (self_caches, cross_caches, mask)

        bos = ops.full((batch_size, 1), self.target_tokenizer.bos_id, "int32")
        token_ids = ops.concatenate([bos, ops.zeros((batch_size, length - 1), "int32")], axis=1)
        prompt_mask = ops.arange(length)[None, :] < 1
        prompt_mask = ops.broadcast_to(prompt_mask, (batch_size, length))
        eos, pad = self.target_tokenizer.eos_id, self.target_tokenizer.pad_id
        if search == "greedy":
            output, _ = sample(
                next_fn, token_ids, prompt_mask, cache, stop_token_ids=(eos,), pad_id=pad
            )
        else:
            output, _ = beam_search(
                next_fn,
                token_ids,
                prompt_mask,
                cache,
                num_beams=beam_width,
                length_penalty=length_penalty,
                eos_id=eos,
                pad_id=pad,
            )
        return output
