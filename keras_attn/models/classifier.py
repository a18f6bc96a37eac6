"""BERT-style text classifier and masked-language-model pretraining."""

import keras
import numpy as np

# The serving endpoints are TensorFlow graphs (see keras_attn.models.serving).
import tensorflow as tf
from keras import ops

from keras_attn.layers.normalization import make_normalization
from keras_attn.models import serving
from keras_attn.models.classifier_presets import CLASSIFIER_PRESETS
from keras_attn.models.converters import bert as bert_converters
from keras_attn.models.converters.keras_hub_checkpoints import (
    check_backbone_class,
    keras_hub_parts,
)
from keras_attn.models.encoder_backbone import EncoderBackbone
from keras_attn.models.evaluation import limit_examples, token_scores
from keras_attn.models.task import (
    AttentionKind,
    Task,
    TextInputs,
    check_bucketing,
    check_tokenizer_fits,
    deserialize_part,
    length_bucketed,
    preprocessed_arrays,
    real_length,
    token_strings,
    tokenizer_and_vocabulary,
    trim_to_longest,
)
from keras_attn.preprocessors import (
    ClassifierPreprocessor,
    MaskedLMPreprocessor,
    report_truncation,
    text_column,
    text_dataset,
)
from keras_attn.tokenizers import Tokenizer
from keras_attn.training.losses import MaskedSparseCategoricalCrossentropy
from keras_attn.training.metrics import MaskedAccuracy, Perplexity
from keras_attn.utils.arguments import (
    check_choice,
    check_positive_int,
    check_positive_number,
    check_rate,
)
from keras_attn.utils.keras_compat import without_keras_mask


@keras.saving.register_keras_serializable(package="keras_attn")
class Classifier(Task):
    """Sentence (or sentence-pair) classifier on an `EncoderBackbone`.

    Pools the encoder output with the `[CLS]` position (through BERT's tanh
    pooler) or with a padding-aware mean, then a dropout and a dense layer
    give `num_classes` logits.

    Args:
        backbone: an `EncoderBackbone`.
        tokenizer: a `keras_attn.tokenizers` tokenizer.
        num_classes: number of labels.
        pooling: `"cls"` or `"mean"`.
        dropout: dropout before the output layer.
        label_names: optional names of the labels, in id order; `classify`
            returns them instead of ids.

    Call arguments:
        inputs: dict of `token_ids`, `segment_ids`, `padding_mask` (or token
            ids alone), as `preprocess` makes them.

    Returns:
        float32 logits `(batch, num_classes)`.

    Example:
    >>> classifier = Classifier.from_preset("tiny", num_classes=2, sequence_length=16,
    ...     num_layers=1, label_names=["negative", "positive"])  # byte-level
    >>> classifier.compile()  # its loss and metrics, XLA
    >>> texts, labels = ["a fine film", "a dull film"] * 16, [1, 0] * 16
    >>> _ = classifier.fit(classifier.make_dataset(texts, labels, batch_size=16), verbose=0)
    >>> labels, probabilities = classifier.classify(["a fine film"])
    >>> labels[0] in ("negative", "positive"), probabilities.shape
    (True, (1, 2))
    """

    presets = CLASSIFIER_PRESETS
    backbone_cls = EncoderBackbone
    task_name = "classifier"
    attention_kinds = {
        "encoder": AttentionKind(
            "tokens", "tokens", "attention_scores", "head_mask", "head_counts",
            "attention_multiplier",
        )
    }
    data_task = "classification"

    def __init__(
        self,
        backbone,
        tokenizer,
        num_classes,
        pooling="cls",
        dropout=0.1,
        label_names=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = deserialize_part(backbone)
        self.tokenizer = deserialize_part(tokenizer)
        check_tokenizer_fits(self.tokenizer, self.backbone.vocabulary_size)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.pooling = check_choice("pooling", pooling, ("cls", "mean"))
        self.dropout = check_rate("dropout", dropout)
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(
                f"`label_names` must have num_classes={num_classes} entries. "
                f"Received: {len(label_names)} label_names"
            )
        self.label_names = None if label_names is None else list(label_names)
        self.head_dropout = keras.layers.Dropout(dropout, name="head_dropout")
        self.head = keras.layers.Dense(num_classes, name="classification_head")
        self.head.build((None, self.backbone.hidden_dim))
        # Derived from the tokenizer and the backbone: not tracked or saved.
        object.__setattr__(
            self,
            "preprocessor",
            ClassifierPreprocessor(self.tokenizer, self.backbone.sequence_length),
        )
        # Every sublayer is built above: weights exist before any call.
        self.built = True

    @classmethod
    def from_parts(cls, backbone_config, tokenizers, **task_args):
        tokenizer, backbone_config = tokenizer_and_vocabulary(
            tokenizers.get("tokenizer"), backbone_config
        )
        task_args.setdefault("num_classes", 2)
        return cls(EncoderBackbone(**backbone_config), tokenizer, **task_args)

    @classmethod
    def from_keras_hub(
        cls, preset_or_model, num_classes, tokenizer=None, sequence_length=None, **kwargs
    ):
        """A classifier converted from a keras-hub BERT or DistilBERT
        checkpoint, computing the same numbers.

        Args:
            preset_or_model: a keras-hub preset name (e.g.
                `"bert_base_en_uncased"`, loaded by keras-hub: a download
                needs the internet), or a built keras-hub `BertBackbone` /
                `DistilBertBackbone` or task (`BertTextClassifier`, ...).
                A `BertTextClassifier` / `DistilBertTextClassifier` with
                `num_classes` classes gives its head too; otherwise the
                head is new.
            num_classes: number of labels.
            tokenizer: the checkpoint's tokenizer (keras-hub's, converted, or
                a keras-attn one), needed with a bare backbone.
            sequence_length: longest input; default the checkpoint's
                `max_sequence_length` (512 in BERT's presets).
            **kwargs: `Classifier` arguments (`label_names`, `dropout`
                (default: the keras-hub classifier's), `pooling`).

        Example (offline, a small random checkpoint):
        >>> import keras_hub
        >>> vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
        >>> hub = keras_hub.models.BertTextClassifier(
        ...     keras_hub.models.BertBackbone(vocabulary_size=7, num_layers=1, num_heads=2,
        ...         hidden_dim=8, intermediate_dim=16, max_sequence_length=16),
        ...     num_classes=2, preprocessor=keras_hub.models.BertTextClassifierPreprocessor(
        ...         keras_hub.models.BertTokenizer(vocabulary), sequence_length=16))
        >>> classifier = Classifier.from_keras_hub(hub, num_classes=2)
        >>> classifier.tokenizer.cls_id, classifier.backbone.activation
        (2, 'gelu_approximate')
        """
        hub_backbone, hub_tokenizer = keras_hub_parts(preset_or_model, tokenizer)
        convert = check_backbone_class(
            hub_backbone, CLASSIFIER_CONVERTERS, "Classifier.from_keras_hub"
        )
        tokenizer = _converted_tokenizer(hub_tokenizer, "Classifier.from_keras_hub")
        backbone = convert(hub_backbone, sequence_length=sequence_length)
        num_classes = check_positive_int("num_classes", num_classes)
        hub_head = None
        if getattr(preset_or_model, "num_classes", None) == num_classes:
            hub_head = preset_or_model
            kwargs.setdefault("dropout", hub_head.dropout)
        classifier = cls(backbone, tokenizer, num_classes, **kwargs)
        if hub_head is not None:
            bert_converters.copy_classifier_head(hub_head, classifier)
        return classifier

    @classmethod
    def from_masked_lm(cls, masked_lm, num_classes, **kwargs):
        """A classifier whose encoder starts from `masked_lm`'s (copied) weights.

        The classification head is new; the MLM head is dropped.
        """
        return cls(_copied_backbone(masked_lm), masked_lm.tokenizer, num_classes, **kwargs)

    def with_head(self, num_classes, label_names=None, pooling=None, dropout=None):
        """A classifier for a new label set that keeps this one's encoder.

        The encoder weights are copied (fine-tuning the new model leaves this
        one as it is); the head is new, with `num_classes` outputs.

        Example:
        >>> sentiment = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
        >>> three_way = sentiment.with_head(3, ["negative", "neutral", "positive"])
        >>> three_way.num_classes, three_way.backbone is sentiment.backbone
        (3, False)
        """
        return Classifier(
            _copied_backbone(self),
            self.tokenizer,
            num_classes,
            pooling=pooling or self.pooling,
            dropout=self.dropout if dropout is None else dropout,
            label_names=label_names,
        )

    def call(self, inputs, training=None):
        return self.logits_from_backbone(self.backbone(inputs, training=training), inputs, training)

    def logits_from_backbone(self, backbone_outputs, inputs, training=None):
        outputs = backbone_outputs
        if self.pooling == "cls":
            pooled = outputs["pooled_output"]
        else:
            sequence = outputs["sequence_output"]
            real = _real_positions(inputs, sequence, self.backbone.pad_token_id)
            weights = ops.cast(real, sequence.dtype)[:, :, None]
            pooled = ops.sum(sequence * weights, axis=1) / ops.maximum(
                ops.sum(weights, axis=1), 1.0
            )
        logits = self.head(self.head_dropout(pooled, training=training))
        return ops.cast(logits, "float32")

    def texts_to_inputs(self, texts, targets=None):
        """`TextInputs` of `texts` (and their pairs in `targets`) as
        `[CLS] text [SEP] (pair [SEP])`; one sequence, `"tokens"`.

        Example:
        >>> classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
        >>> batch = classifier.texts_to_inputs(["hi"], targets=["yo"])
        >>> batch.tokens["tokens"][0], batch.inputs["segment_ids"][0].tolist()
        (['[CLS]', 'h', 'i', '[SEP]', 'y', 'o', '[SEP]'], [0, 0, 0, 0, 1, 1, 1])
        """
        inputs, truncated = self.preprocess(texts, targets)
        return encoder_text_inputs(self.tokenizer, inputs, truncated)

    def preprocess(self, texts, text_pairs=None):
        """Static-shape model inputs for `texts` (and `text_pairs`).

        Returns `(inputs, truncated)`: the `ClassifierPreprocessor` dict as
        numpy arrays, and `truncated[i]`, the tokens cut from row `i`.
        """
        columns = self._text_columns(texts, text_pairs)
        inputs = self.preprocessor(*columns)
        return (
            {name: value.numpy() for name, value in inputs.items()},
            self.preprocessor.count_truncated(*columns),
        )

    def _text_columns(self, texts, text_pairs):
        texts = text_column("texts", texts)
        if text_pairs is None:
            return (texts,)
        text_pairs = text_column("text_pairs", text_pairs)
        if texts.shape[0] != text_pairs.shape[0]:
            raise ValueError(
                "`texts` and `text_pairs` must have the same length. Received: "
                f"{texts.shape[0]} texts and {text_pairs.shape[0]} text_pairs"
            )
        return texts, text_pairs

    def make_dataset(self, texts, labels, text_pairs=None, batch_size=32, shuffle=True, seed=0,
                     bucketing=True):
        """A `tf.data.Dataset` of `(inputs, labels)` batches for `fit`.

        `bucketing` (default True): batches of similar lengths, each cut to
        one of a few widths fitted to the data (`keras_attn.data.
        bucketed_batches`); the padding mask keeps the cut rows' outputs
        unchanged, and the compiled step is traced once per width. True is
        4 buckets, an int that many; False pads every batch to
        `sequence_length` and runs the preprocessor inside the pipeline.
        """
        columns = self._text_columns(texts, text_pairs)
        num_buckets = check_bucketing(bucketing)
        self.last_truncation = report_truncation(
            self.preprocessor.count_truncated(*columns), "texts"
        )
        labels = self._label_ids(labels)
        if len(labels) != columns[0].shape[0]:
            raise ValueError(
                "`texts` and `labels` must have the same length. Received: "
                f"{columns[0].shape[0]} texts and {len(labels)} labels"
            )
        preprocessor = self.preprocessor

        def examples(*batch):
            *texts_batch, label_batch = batch
            return preprocessor(*texts_batch), label_batch

        if not num_buckets:
            return text_dataset((*columns, labels), examples, batch_size, shuffle=shuffle,
                                seed=seed)
        arrays = preprocessed_arrays((*columns, labels), examples)
        lengths = real_length(arrays[0]["padding_mask"])
        return length_bucketed(arrays, lengths, self.backbone.sequence_length, batch_size,
                               shuffle, seed, num_buckets)

    def dataset_from_data(self, data, batch_size=32, shuffle=True, seed=0, bucketing=True):
        labels = list(data.labels)
        if self.label_names and data.label_names:
            # The data's label ids follow its own names; the model's may differ.
            labels = [data.label_names[label] for label in labels]
        return self.make_dataset(
            data.texts, labels, batch_size=batch_size, shuffle=shuffle, seed=seed,
            bucketing=bucketing,
        )

    @classmethod
    def arguments_for_data(cls, data):
        return {"num_classes": len(data.label_names), "label_names": list(data.label_names)}

    def check_fits_data(self, data):
        if self.num_classes != len(data.label_names):
            raise ValueError(
                f"the model has {self.num_classes} classes; the data has "
                f"{len(data.label_names)} ({data.label_names})"
            )

    def default_loss(self, label_smoothing=0.0):
        return MaskedSparseCategoricalCrossentropy(
            label_smoothing=label_smoothing, ignore_index=None
        )

    def default_metrics(self):
        return ["accuracy"]

    def _label_ids(self, labels):
        if self.label_names is not None and len(labels) and isinstance(labels[0], str):
            unknown = sorted(set(labels) - set(self.label_names))
            if unknown:
                raise ValueError(
                    f"`labels` holds names not in label_names {self.label_names}: {unknown[:5]}"
                )
            labels = [self.label_names.index(label) for label in labels]
        labels = np.asarray(labels, "int32")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"`labels` must be in [0, {self.num_classes}). Received values from "
                f"{labels.min()} to {labels.max()}"
            )
        return labels

    def classify(self, texts, text_pairs=None, batch_size=64):
        """Labels and class probabilities for `texts`.

        Returns:
            `(labels, probabilities)`: a list of label names (or ids) and a
            float32 array `(len(texts), num_classes)`.

        Texts (with their pairs) longer than the model's `sequence_length`
        are cut to fit, with a warning; `last_truncation` holds the
        `TruncationReport` of the call.
        """
        columns = self._text_columns(texts, text_pairs)
        if columns[0].shape[0] == 0:
            return [], np.zeros((0, self.num_classes), "float32")
        self.last_truncation = report_truncation(
            self.preprocessor.count_truncated(*columns), "texts"
        )
        logits = self.predict(self.preprocessor(*columns), batch_size=batch_size, verbose=0)
        probabilities = ops.convert_to_numpy(ops.softmax(logits, axis=-1))
        ids = probabilities.argmax(-1)
        labels = [self.label_names[i] for i in ids] if self.label_names else ids.tolist()
        return labels, probabilities

    def evaluate_data(self, data, options=None):
        """`accuracy` of `classify` on `data.texts` against `data.labels`."""
        options = options or {}
        count = limit_examples(options, len(data.texts))
        texts, labels = list(data.texts[:count]), list(data.labels[:count])
        predicted, probabilities = self.classify(texts, batch_size=options.get("batch_size") or 64)
        if self.label_names:
            unknown = sorted(set(data.label_names) - set(self.label_names))
            if unknown:
                raise ValueError(
                    f"the data has labels {unknown} that the model does not know "
                    f"(its labels: {self.label_names})"
                )
            truth = [data.label_names[label] for label in labels]
        else:
            truth = labels
        metrics = {
            "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth)])),
            "examples": count,
        }
        samples = [
            f"{text!r} -> {p} ({probabilities[i].max():.2f}; true {t})"
            for i, (text, p, t) in enumerate(zip(texts, predicted, truth))
        ]
        return metrics, samples

    def serving_endpoints(self, jit_compile=True):
        """`serving_default`, `classify_pairs` and `logits`.

        - `serving_default(inputs)` and `classify_pairs(inputs, text_pairs)`:
          as `classify(texts[, text_pairs])` -> `{"labels"}` (label names, or
          ids as strings), `{"label_ids"}` int32 `(batch,)` and
          `{"probabilities"}` float32 `(batch, num_classes)`.
        - `logits({"token_ids", "segment_ids", "padding_mask"})`: int32,
          int32 and bool `(batch, sequence_length)`, as the preprocessor
          makes them -> `{"logits"}` `(batch, num_classes)`.
        """
        length = self.backbone.sequence_length
        label_names = self.label_names
        preprocessor = self.preprocessor
        forward = serving.compiled_core(lambda inputs: self(inputs, training=False), jit_compile)

        def predictions(inputs):
            probabilities = tf.nn.softmax(forward(inputs), axis=-1)
            label_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
            if label_names:
                labels = tf.gather(tf.constant(label_names), label_ids)
            else:
                labels = tf.strings.as_string(label_ids)
            return {"labels": labels, "label_ids": label_ids, "probabilities": probabilities}

        def serve(inputs):
            return predictions(preprocessor(inputs))

        def classify_pairs(inputs, text_pairs):
            return predictions(preprocessor(inputs, text_pairs))

        return [
            serving.Endpoint(serving.SERVING_DEFAULT, serve, [serving.texts_spec()]),
            serving.Endpoint(
                serving.CLASSIFY_PAIRS,
                classify_pairs,
                [serving.texts_spec(), serving.texts_spec("text_pairs")],
            ),
            serving.logits_endpoint(self, serving.encoder_inputs_spec(length), jit_compile),
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            pooling=self.pooling,
            dropout=self.dropout,
            label_names=self.label_names,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_attn")
class MaskedLanguageModel(Task):
    """Masked-language-model pretraining of an `EncoderBackbone` (BERT).

    A share `mask_rate` of the real tokens is selected; 80% of those become
    `[MASK]`, 10% a random token, 10% stay, and the model predicts the
    originals. The head is BERT's: dense + GELU + norm, then the transposed
    token embedding plus a bias. `Classifier.from_masked_lm` carries the
    pretrained encoder over.

    Args:
        backbone: an `EncoderBackbone`.
        tokenizer: a `keras_attn.tokenizers` tokenizer.
        mask_rate: share of real tokens to predict.
        head_norm_epsilon: epsilon of the head's norm; `None` uses the
            backbone's `norm_epsilon` (keras-hub's BERT heads use 1e-5).

    Returns (call):
        float32 logits `(batch, time, vocabulary_size)`.

    Example:
    >>> mlm = MaskedLanguageModel.from_preset("tiny", num_layers=1)  # byte-level
    >>> batch = mlm.texts_to_inputs(["a [MASK] c"])
    >>> batch.tokens["tokens"][0], tuple(mlm(batch.inputs).shape)
    (['[CLS]', 'a', ' ', '[MASK]', ' ', 'c', '[SEP]'], (1, 7, 263))
    >>> filled, candidates = mlm.fill_mask(["a [MASK] c"], top_k=3)
    >>> len(candidates[0]), len(candidates[0][0])  # one mask, three candidates
    (1, 3)
    """

    presets = CLASSIFIER_PRESETS
    backbone_cls = EncoderBackbone
    task_name = "masked_lm"
    attention_kinds = {
        "encoder": AttentionKind(
            "tokens", "tokens", "attention_scores", "head_mask", "head_counts",
            "attention_multiplier",
        )
    }
    data_task = "generation"

    def __init__(self, backbone, tokenizer, mask_rate=0.15, head_norm_epsilon=None, **kwargs):
        super().__init__(**kwargs)
        self.backbone = deserialize_part(backbone)
        self.tokenizer = deserialize_part(tokenizer)
        check_tokenizer_fits(self.tokenizer, self.backbone.vocabulary_size)
        self.mask_rate = check_rate("mask_rate", mask_rate)
        self.head_norm_epsilon = check_positive_number(
            "head_norm_epsilon", head_norm_epsilon, allow_none=True
        )
        hidden = self.backbone.hidden_dim
        self.transform = keras.layers.Dense(hidden, activation="gelu", name="mlm_transform")
        self.transform.build((None, None, hidden))
        self.transform_norm = make_normalization(
            self.backbone.normalization,
            self.backbone.norm_epsilon if head_norm_epsilon is None else self.head_norm_epsilon,
            name="mlm_norm",
        )
        self.transform_norm.build((None, None, hidden))
        self.output_bias = self.add_weight(
            shape=(self.backbone.vocabulary_size,), initializer="zeros", name="mlm_output_bias"
        )
        # Derived from the tokenizer and the backbone: not tracked or saved.
        object.__setattr__(
            self,
            "preprocessor",
            MaskedLMPreprocessor(self.tokenizer, self.backbone.sequence_length, self.mask_rate),
        )
        # The masked-LM loss never reaches the [CLS] pooler: kept out of
        # training so no step reports missing gradients for it.
        self.backbone.pooler.trainable = False
        # Every sublayer is built above: weights exist before any call.
        self.built = True

    @classmethod
    def from_keras_hub(cls, preset_or_model, tokenizer=None, sequence_length=None, **kwargs):
        """A masked language model converted from a keras-hub BERT or
        DistilBERT checkpoint, computing the same numbers.

        Args:
            preset_or_model: a keras-hub preset name (keras-hub loads its
                masked LM: a download needs the internet), or a built
                keras-hub `BertMaskedLM` / `DistilBertMaskedLM` (its head
                comes along: dense + GELU + layer norm, the tied token
                embedding, the output bias) or bare backbone (new head).
            tokenizer: the checkpoint's tokenizer (keras-hub's, converted, or
                a keras-attn one), needed with a bare backbone.
            sequence_length: longest input; default the checkpoint's
                `max_sequence_length`.
            **kwargs: `MaskedLanguageModel` arguments (`mask_rate`, ...).
        """
        if isinstance(preset_or_model, str):
            preset_or_model = bert_converters.load_masked_lm_preset(preset_or_model)
        hub_backbone, hub_tokenizer = keras_hub_parts(preset_or_model, tokenizer)
        convert = check_backbone_class(
            hub_backbone, CLASSIFIER_CONVERTERS, "MaskedLanguageModel.from_keras_hub"
        )
        tokenizer = _converted_tokenizer(hub_tokenizer, "MaskedLanguageModel.from_keras_hub")
        backbone = convert(hub_backbone, sequence_length=sequence_length)
        epsilon = bert_converters.masked_lm_head_epsilon(preset_or_model)
        kwargs.setdefault("head_norm_epsilon", 1e-5 if epsilon is None else epsilon)
        model = cls(backbone, tokenizer, **kwargs)
        bert_converters.copy_masked_lm_head(preset_or_model, model)
        return model

    @classmethod
    def from_parts(cls, backbone_config, tokenizers, **task_args):
        tokenizer, backbone_config = tokenizer_and_vocabulary(
            tokenizers.get("tokenizer"), backbone_config
        )
        task_args.pop("num_classes", None)
        return cls(EncoderBackbone(**backbone_config), tokenizer, **task_args)

    def call(self, inputs, training=None):
        return self.logits_from_backbone(self.backbone(inputs, training=training), inputs, training)

    def logits_from_backbone(self, backbone_outputs, inputs, training=None):
        hidden = self.transform_norm(self.transform(backbone_outputs["sequence_output"]))
        # Logits of every position are wanted: the padding mask stays behind.
        logits = self.backbone.token_embedding(without_keras_mask(hidden), reverse=True)
        return ops.cast(logits, "float32") + ops.cast(self.output_bias, "float32")

    def texts_to_inputs(self, texts, targets=None):
        """`TextInputs` of `[CLS] text [SEP]`, literal `[MASK]`s as mask ids
        (as `fill_mask` reads them); one sequence, `"tokens"`. Masked
        language models take no `targets`."""
        if targets is not None:
            raise ValueError(
                "A masked language model reads single texts: `targets` must be None. "
                f"Received: targets={targets!r:.60}"
            )
        texts = text_column("texts", texts)
        inputs = {
            name: value.numpy()
            for name, value in self.preprocessor.fill_mask_inputs(texts).items()
        }
        return encoder_text_inputs(
            self.tokenizer, inputs, self.preprocessor.fill_mask_truncated(texts)
        )

    def make_dataset(self, texts, batch_size=32, num_maskings=1, shuffle=True, seed=0):
        """`(inputs, labels)` batches for `fit`, masked by `self.preprocessor`
        inside the pipeline.

        Masking is dynamic (Liu et al. 2019): every batch draws a new
        masking, different each epoch and reproducible for a `seed`. Each
        text appears `num_maskings` times per epoch.
        """
        texts = text_column("texts", texts)
        self.last_truncation = report_truncation(
            self.preprocessor.count_truncated(texts), "texts"
        )
        preprocessor = self.preprocessor
        return text_dataset(
            (texts,),
            lambda batch, batch_seed: preprocessor(batch, seed=batch_seed),
            batch_size,
            shuffle=shuffle,
            seed=seed,
            repeat=check_positive_int("num_maskings", num_maskings),
            random_seeds=True,
        )

    def dataset_from_data(self, data, batch_size=32, shuffle=True, seed=0, bucketing=True):
        """`make_dataset(data.texts)`. No length bucketing: the masking is
        drawn inside the pipeline for every batch, so `bucketing` is checked
        and unused (batches are padded to `sequence_length`)."""
        check_bucketing(bucketing)
        return self.make_dataset(data.texts, batch_size=batch_size, shuffle=shuffle, seed=seed)

    def ignored_label(self):
        # Labels are `pad_id` wherever no token was selected; a selected
        # token is never a special one, so padding is always safe to ignore.
        return self.tokenizer.pad_id

    def default_metrics(self):
        ignored = self.ignored_label()
        return [MaskedAccuracy(ignore_index=ignored), Perplexity(ignore_index=ignored)]

    def _fill(self, inputs):
        """Predicted ids at each `[MASK]` and their probabilities."""
        logits = self(inputs, training=False)
        # Special tokens are never a fill.
        special = np.zeros(self.backbone.vocabulary_size, bool)
        special[list(self.tokenizer.special_ids)] = True
        logits = ops.where(special, -1e9, logits)
        probabilities = ops.softmax(logits, axis=-1)
        is_mask = ops.equal(inputs["token_ids"], self.tokenizer.mask_id)
        filled = ops.where(
            is_mask, ops.cast(ops.argmax(probabilities, axis=-1), "int32"), inputs["token_ids"]
        )
        return filled, is_mask, probabilities

    def fill_mask(self, texts, top_k=5):
        """Fills each literal `[MASK]` in `texts` with the likeliest token.

        Args:
            texts: strings with one or more `[MASK]`.
            top_k: candidates listed per mask.

        Returns:
            `(filled_texts, candidates)`: each text with its masks replaced
            by the likeliest tokens, and per text, per mask, the `top_k`
            `(token, probability)` pairs, likeliest first.

        Texts longer than the model's `sequence_length` are cut to fit (a
        `[MASK]` cut off is not filled), with a warning; `last_truncation`
        holds the `TruncationReport` of the call.
        """
        top_k = check_positive_int("top_k", top_k)
        texts = text_column("texts", texts)
        self.last_truncation = report_truncation(
            self.preprocessor.fill_mask_truncated(texts), "texts"
        )
        inputs = self.preprocessor.fill_mask_inputs(texts)
        filled, is_mask, probabilities = self._fill(inputs)
        filled_texts = [
            text.decode("utf-8", errors="replace")
            for text in self.preprocessor.detokenize(filled).numpy()
        ]
        probabilities = ops.convert_to_numpy(probabilities)
        candidates = []
        for row, positions in zip(probabilities, ops.convert_to_numpy(is_mask)):
            per_mask = []
            for position in np.flatnonzero(positions):
                best = np.argsort(-row[position])[:top_k]
                per_mask.append(
                    [(self.tokenizer.id_to_token(int(i)), float(row[position, i])) for i in best]
                )
            candidates.append(per_mask)
        return filled_texts, candidates

    def evaluate_data(self, data, options=None):
        """Masked-token `loss`, `masked_accuracy` and `perplexity` on
        `data.texts` (one masking, fixed by the seed)."""
        options = options or {}
        count = limit_examples(options, len(data.texts))
        texts = list(data.texts[:count])
        scores = token_scores(self, self.make_dataset, (texts,), options.get("batch_size") or 64)
        metrics = {**scores, "examples": count}
        shown = [_mask_one_word(text) for text in texts[: options.get("samples", 3)]]
        shown = [text for text in shown if text]
        samples = []
        if shown:
            filled, _ = self.fill_mask(shown, top_k=1)
            samples = [f"{s!r} -> {f!r}" for s, f in zip(shown, filled)]
        return metrics, samples

    def serving_endpoints(self, jit_compile=True):
        """`serving_default` / `fill_mask` and `logits`.

        - `serving_default(inputs)` = `fill_mask(inputs)`: strings with
          literal `[MASK]`s -> `{"texts"}` (filled in, as `fill_mask`),
          `{"token_ids"}` int32 `(batch, sequence_length)` (the input ids
          with each mask replaced by its prediction) and `{"mask_positions"}`
          bool `(batch, sequence_length)`.
        - `logits({"token_ids", "segment_ids", "padding_mask"})` ->
          `{"logits"}` float32 `(batch, sequence_length, vocabulary_size)`.
        """
        length = self.backbone.sequence_length
        preprocessor = self.preprocessor
        fill = serving.compiled_core(lambda inputs: self._fill(inputs)[:2], jit_compile)

        def fill_mask(inputs):
            filled, is_mask = fill(preprocessor.fill_mask_inputs(inputs))
            return {
                "texts": preprocessor.detokenize(filled),
                "token_ids": filled,
                "mask_positions": is_mask,
            }

        return [
            serving.Endpoint(serving.SERVING_DEFAULT, fill_mask, [serving.texts_spec()]),
            serving.Endpoint(serving.FILL_MASK, fill_mask, [serving.texts_spec()]),
            serving.logits_endpoint(self, serving.encoder_inputs_spec(length), jit_compile),
        ]

    def get_config(self):
        return {
            **super().get_config(),
            "mask_rate": self.mask_rate,
            "head_norm_epsilon": self.head_norm_epsilon,
        }


# The keras-hub backbones Classifier / MaskedLanguageModel.from_keras_hub
# convert, by class name.
CLASSIFIER_CONVERTERS = {
    "BertBackbone": bert_converters.convert_bert_backbone,
    "DistilBertBackbone": bert_converters.convert_distil_bert_backbone,
}


def _converted_tokenizer(hub_tokenizer, converted_by):
    """A keras-attn tokenizer for a checkpoint's keras-hub tokenizer (a
    keras-attn tokenizer passes through)."""
    if isinstance(hub_tokenizer, Tokenizer):
        return hub_tokenizer
    if hub_tokenizer is None:
        raise ValueError(
            f"{converted_by} needs the checkpoint's tokenizer: pass `tokenizer=` (a keras-hub "
            "or keras-attn tokenizer) with a bare backbone, or a keras-hub task with a "
            "preprocessor. Received: tokenizer=None"
        )
    return bert_converters.convert_bert_tokenizer(hub_tokenizer)


def encoder_text_inputs(tokenizer, inputs, truncated):
    """`TextInputs` of packed encoder inputs (`token_ids`, `segment_ids`,
    `padding_mask`), trimmed to the longest row."""
    lengths = np.sum(inputs["padding_mask"], axis=1)
    inputs = trim_to_longest(inputs, lengths)
    return TextInputs(
        inputs=inputs,
        tokens={"tokens": token_strings(tokenizer, inputs["token_ids"], lengths)},
        truncated={"tokens": np.asarray(truncated)},
    )


def _copied_backbone(model):
    backbone = EncoderBackbone.from_config(model.backbone.get_config())
    backbone.set_weights(model.backbone.get_weights())
    return backbone


def _real_positions(inputs, sequence, pad_token_id):
    """Bool `(batch, time)`: the given padding mask, else ids !=
    `pad_token_id`, else all positions (token embeddings without a mask, or
    a backbone without a padding id)."""
    if not isinstance(inputs, dict):
        inputs = {"token_ids": inputs}
    if inputs.get("padding_mask") is not None:
        return ops.cast(inputs["padding_mask"], "bool")
    if inputs.get("token_ids") is not None and pad_token_id is not None:
        return ops.not_equal(inputs["token_ids"], pad_token_id)
    return ops.ones(ops.shape(sequence)[:2], "bool")


def _mask_one_word(text):
    """`text` with its middle word (or, for one word, its middle character)
    replaced by `[MASK]`; `""` for an empty text."""
    words = text.split(" ")
    if len(words) >= 3:
        middle = len(words) // 2
        return " ".join(words[:middle] + ["[MASK]"] + words[middle + 1 :])
    if not text:
        return ""
    middle = len(text) // 2
    return text[:middle] + "[MASK]" + text[middle + 1 :]
