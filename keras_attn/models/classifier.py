"""BERT-style text classifier and masked-language-model pretraining."""

import keras
import numpy as np
from keras import ops

from keras_attn.layers.normalization import make_normalization
from keras_attn.models.classifier_presets import CLASSIFIER_PRESETS
from keras_attn.models.encoder_backbone import EncoderBackbone
from keras_attn.models.task import (
    Task,
    check_tokenizer_fits,
    deserialize_part,
    tokenizer_and_vocabulary,
)
from keras_attn.models.text_batches import (
    make_dataset,
    pack_ids,
    report_truncation,
    tokenize_texts,
)
from keras_attn.utils.arguments import check_choice, check_positive_int, check_rate


def encode_texts(tokenizer, texts, sequence_length, text_pairs=None):
    """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` inputs for an encoder.

    Returns `(inputs, truncated)`: a dict of numpy `token_ids`,
    `segment_ids` and `padding_mask`, each `(N, sequence_length)`, and the
    number of tokens cut from each row to fit.
    """
    from keras_attn.tokenizers import pack_pair

    first = tokenize_texts(tokenizer, texts)
    if text_pairs is None:
        rows = [[tokenizer.cls_id, *row, tokenizer.sep_id] for row in first]
        ids, mask, truncated = pack_ids(rows, sequence_length, tokenizer)
        if truncated.any():
            # Keep the closing [SEP] of truncated rows.
            ids[truncated > 0, -1] = tokenizer.sep_id
        segments = np.zeros_like(ids)
    else:
        second = tokenize_texts(tokenizer, text_pairs)
        if len(second) != len(first):
            raise ValueError(
                "`texts` and `text_pairs` must have the same length. Received: "
                f"{len(first)} texts and {len(second)} text_pairs"
            )
        from keras_attn.models.text_batches import ragged

        ids, segments, mask, truncated = (
            np.asarray(x)
            for x in pack_pair(
                ragged(first), ragged(second), sequence_length, tokenizer.cls_id, tokenizer.sep_id
            )
        )
    inputs = {
        "token_ids": ids.astype("int32"),
        "segment_ids": segments.astype("int32"),
        "padding_mask": mask.astype(bool),
    }
    return inputs, truncated


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
    >>> classifier = Classifier.from_preset("tiny", num_classes=2)
    >>> classifier.fit(classifier.make_dataset(texts, labels), epochs=3)
    >>> labels, probabilities = classifier.classify(["a fine film"])
    """

    presets = CLASSIFIER_PRESETS
    backbone_cls = EncoderBackbone

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
        >>> three_way = sentiment.with_head(3, ["negative", "neutral", "positive"])
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
        outputs = self.backbone(inputs, training=training)
        if self.pooling == "cls":
            pooled = outputs["pooled_output"]
        else:
            sequence = outputs["sequence_output"]
            token_ids = inputs["token_ids"] if isinstance(inputs, dict) else inputs
            weights = ops.cast(ops.not_equal(token_ids, 0), sequence.dtype)[:, :, None]
            pooled = ops.sum(sequence * weights, axis=1) / ops.maximum(
                ops.sum(weights, axis=1), 1.0
            )
        logits = self.head(self.head_dropout(pooled, training=training))
        return ops.cast(logits, "float32")

    def preprocess(self, texts, text_pairs=None):
        """Static-shape model inputs for `texts` (and `text_pairs`).

        Returns `(inputs, truncated)`; `truncated[i]` counts the tokens cut
        from row `i`.
        """
        return encode_texts(self.tokenizer, texts, self.backbone.sequence_length, text_pairs)

    def make_dataset(self, texts, labels, text_pairs=None, batch_size=32, shuffle=True, seed=0):
        """A `tf.data.Dataset` of `(inputs, labels)` batches for `fit`."""
        inputs, truncated = self.preprocess(texts, text_pairs)
        self.last_truncation = report_truncation(truncated, "texts")
        labels = self._label_ids(labels)
        return make_dataset((inputs, labels), batch_size, shuffle=shuffle, seed=seed)

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
        """
        inputs, _ = self.preprocess(texts, text_pairs)
        logits = self.predict(inputs, batch_size=batch_size, verbose=0)
        probabilities = ops.convert_to_numpy(ops.softmax(logits, axis=-1))
        ids = probabilities.argmax(-1)
        labels = [self.label_names[i] for i in ids] if self.label_names else ids.tolist()
        return labels, probabilities

    def export_serving(self, path, overwrite=False, jit_compile=True):
        """Writes a TensorFlow SavedModel that classifies strings.

        Signatures: `serving_default` (texts), `classify_pairs` (texts and
        text pairs), both giving labels, label ids and probabilities, and
        `logits` (token ids, segment ids and padding mask in). Runs without
        Keras or keras-attn; see `keras_attn.export.export`. (`model.export`
        is Keras' forward-pass export.)
        """
        from keras_attn.export import export

        export(self, path, overwrite=overwrite, jit_compile=jit_compile)

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

    Returns (call):
        float32 logits `(batch, time, vocabulary_size)`.
    """

    presets = CLASSIFIER_PRESETS
    backbone_cls = EncoderBackbone

    def __init__(self, backbone, tokenizer, mask_rate=0.15, **kwargs):
        super().__init__(**kwargs)
        self.backbone = deserialize_part(backbone)
        self.tokenizer = deserialize_part(tokenizer)
        check_tokenizer_fits(self.tokenizer, self.backbone.vocabulary_size)
        self.mask_rate = check_rate("mask_rate", mask_rate)
        hidden = self.backbone.hidden_dim
        self.transform = keras.layers.Dense(hidden, activation="gelu", name="mlm_transform")
        self.transform.build((None, None, hidden))
        self.transform_norm = make_normalization(
            self.backbone.normalization, self.backbone.norm_epsilon, name="mlm_norm"
        )
        self.transform_norm.build((None, None, hidden))
        self.output_bias = self.add_weight(
            shape=(self.backbone.vocabulary_size,), initializer="zeros", name="mlm_output_bias"
        )
        # Every sublayer is built above: weights exist before any call.
        self.built = True

    @classmethod
    def from_parts(cls, backbone_config, tokenizers, **task_args):
        tokenizer, backbone_config = tokenizer_and_vocabulary(
            tokenizers.get("tokenizer"), backbone_config
        )
        task_args.pop("num_classes", None)
        return cls(EncoderBackbone(**backbone_config), tokenizer, **task_args)

    def call(self, inputs, training=None):
        sequence = self.backbone(inputs, training=training)["sequence_output"]
        hidden = self.transform_norm(self.transform(sequence))
        logits = self.backbone.token_embedding(hidden, reverse=True)
        return ops.cast(logits, "float32") + ops.cast(self.output_bias, "float32")

    def mask_tokens(self, token_ids, seed=0):
        """Applies the 80/10/10 masking to numpy `token_ids`.

        Returns `(masked_ids, labels)`: `labels` holds the original id at the
        selected positions and 0 (ignored by the loss) elsewhere.
        """
        rng = np.random.default_rng(seed)
        token_ids = np.asarray(token_ids)
        special = np.isin(token_ids, self.tokenizer.special_ids)
        selected = (rng.random(token_ids.shape) < self.mask_rate) & ~special
        labels = np.where(selected, token_ids, 0).astype("int32")
        action = rng.random(token_ids.shape)
        masked = token_ids.copy()
        masked[selected & (action < 0.8)] = self.tokenizer.mask_id
        random_tokens = rng.integers(
            len(self.tokenizer.special_ids), self.tokenizer.vocabulary_size, token_ids.shape
        )
        swap = selected & (action >= 0.8) & (action < 0.9)
        masked[swap] = random_tokens[swap]
        return masked.astype("int32"), labels

    def make_dataset(self, texts, batch_size=32, num_maskings=1, shuffle=True, seed=0):
        """`(inputs, labels)` batches; each text appears `num_maskings` times
        with a different random masking (static masking, as in BERT)."""
        inputs, truncated = encode_texts(self.tokenizer, texts, self.backbone.sequence_length)
        self.last_truncation = report_truncation(truncated, "texts")
        parts = []
        for copy in range(check_positive_int("num_maskings", num_maskings)):
            masked, labels = self.mask_tokens(inputs["token_ids"], seed=seed + copy)
            parts.append((dict(inputs, token_ids=masked), labels))
        merged_inputs = {k: np.concatenate([p[0][k] for p in parts]) for k in inputs}
        merged_labels = np.concatenate([p[1] for p in parts])
        return make_dataset((merged_inputs, merged_labels), batch_size, shuffle, seed)

    def get_config(self):
        return {**super().get_config(), "mask_rate": self.mask_rate}


def _copied_backbone(model):
    backbone = EncoderBackbone.from_config(model.backbone.get_config())
    backbone.set_weights(model.backbone.get_weights())
    return backbone
