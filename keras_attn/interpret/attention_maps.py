"""Every layer's and head's attention for a batch of texts, as NumPy arrays
with the tokens as strings."""

import dataclasses

import numpy as np

from keras_attn.utils.arguments import check_non_negative_int


@dataclasses.dataclass
class AttentionMaps:
    """The attention of one text through a model, padding removed.

    Attributes:
        tokens: sequence name (`"tokens"`, or `"source"` and `"target"`) ->
            its token strings.
        attention: attention kind (`"encoder"`, `"decoder"`, `"cross"`) ->
            float32 `(layers, heads, queries, keys)`; rows are probability
            distributions over the keys. Layers with fewer heads than the
            widest have all-zero rows in the heads they lack.
        sequences: attention kind -> `(query sequence, key sequence)` names.
        head_counts: attention kind -> heads of each layer.

    Example:
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=2)
    >>> maps = attention_maps(generator, ["abc"])[0]
    >>> maps.attention["decoder"].shape, maps.query_tokens("decoder")
    ((2, 4, 4, 4), ['[BOS]', 'a', 'b', 'c'])
    """

    tokens: dict
    attention: dict
    sequences: dict
    head_counts: dict

    @property
    def kinds(self):
        """The attention kinds held, e.g. `("encoder", "decoder", "cross")`."""
        return tuple(self.attention)

    def query_tokens(self, kind):
        """Token strings of the rows of `attention[kind]`."""
        return self.tokens[self._sequences(kind)[0]]

    def key_tokens(self, kind):
        """Token strings of the columns of `attention[kind]`."""
        return self.tokens[self._sequences(kind)[1]]

    def _sequences(self, kind):
        if kind not in self.sequences:
            raise ValueError(
                f"`kind` must be one of {list(self.sequences)}. Received: kind={kind!r}"
            )
        return self.sequences[kind]


def attention_maps(model, texts, targets=None, max_new_tokens=0):
    """Every layer's and head's attention of `model` over `texts`.

    Args:
        model: a task (`Generator`, `Translator`, `Classifier`,
            `MaskedLanguageModel`, or a converted pretrained model).
        texts: a list of strings (prompts, sources or sentences).
        targets: the second texts where the task has them (see
            `Task.texts_to_inputs`): a generator's continuations, a
            translator's target texts (default: its own translation), a
            classifier's text pairs.
        max_new_tokens: for a generator without `targets`, first generate
            this many tokens greedily and look at prompt and continuation.

    Returns:
        One `AttentionMaps` per text.

    Example:
    >>> from keras_attn.models import Translator
    >>> translator = Translator.from_preset("tiny", source_length=16, target_length=8,
    ...     num_encoder_layers=1, num_decoder_layers=1)
    >>> (maps,) = attention_maps(translator, ["abc"], targets=["xy"])
    >>> maps.kinds, maps.attention["cross"].shape  # (layers, heads, target, source)
    (('encoder', 'decoder', 'cross'), (1, 4, 3, 4))
    >>> maps.query_tokens("cross"), maps.key_tokens("cross")
    (['[BOS]', 'x', 'y'], ['a', 'b', 'c', '[EOS]'])
    """
    max_new_tokens = check_non_negative_int("max_new_tokens", max_new_tokens)
    if max_new_tokens and model.task_name != "generator":
        raise ValueError(
            "`max_new_tokens` continues a generator's prompts; a "
            f"{model.task_name} has no continuation. Received: max_new_tokens={max_new_tokens}"
        )
    extra = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    batch = model.texts_to_inputs(texts, targets, **extra)
    outputs = model.backbone(batch.inputs, return_attention_scores=True)
    return maps_from_outputs(model, batch, outputs)


def maps_from_outputs(model, batch, outputs):
    """`AttentionMaps` per row from a `TextInputs` batch and the backbone's
    outputs on it (called with `return_attention_scores=True`).

    Example (one backbone call serving both the hidden states and the maps):
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    >>> batch = generator.texts_to_inputs(["abc", "a"])
    >>> outputs = generator.backbone(batch.inputs, return_attention_scores=True)
    >>> maps = maps_from_outputs(generator, batch, outputs)
    >>> [m.attention["decoder"].shape for m in maps], maps[1].head_counts
    ([(1, 4, 4, 4), (1, 4, 2, 2)], {'decoder': [4]})
    """
    kinds = model.attention_kinds
    scores = {
        name: np.asarray(outputs[kind.scores_output], dtype="float32")
        for name, kind in kinds.items()
    }
    maps = []
    for row in range(batch.batch_size):
        tokens = {name: rows[row] for name, rows in batch.tokens.items()}
        attention = {}
        for name, kind in kinds.items():
            queries, keys = len(tokens[kind.queries]), len(tokens[kind.keys])
            attention[name] = scores[name][:, row, :, :queries, :keys]
        maps.append(
            AttentionMaps(
                tokens=tokens,
                attention=attention,
                sequences={name: (kind.queries, kind.keys) for name, kind in kinds.items()},
                head_counts={
                    name: list(getattr(model.backbone, kind.head_counts))
                    for name, kind in kinds.items()
                },
            )
        )
    return maps
