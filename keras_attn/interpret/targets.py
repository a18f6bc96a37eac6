"""Which output an attribution explains: one shared way to name it for every
task, and the differentiable scalar it picks from the task's logits."""

import dataclasses
import numbers

import numpy as np
from keras import ops

from keras_attn.utils.arguments import check_choice

SCORES = ("logit", "log_prob")


@dataclasses.dataclass(frozen=True)
class Target:
    """The output to explain.

    Attributes:
        position: for a generator, a position of the tokens (`[BOS]` is 0;
            the output at position `p` predicts token `p + 1`); for a
            translator, a position of the target tokens (the decoder's
            inputs, `[BOS]` first); for a masked language model, a position
            of the tokens (normally a `[MASK]`). Negative values count from
            the last real token (-1 is the last). `None`: the last real
            position (masked LM: the first `[MASK]`). A classifier has no
            position.
        token: the class (classifier: an index or a label name) or the token
            (an id or a token string) whose score is explained. `None`: the
            model's prediction.

    A plain int or string given as a target is `Target(token=...)`; a dict is
    `Target(**dict)`.

    Example (the byte tokenizer's "c" is id 99 + 7):
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    >>> batch = generator.texts_to_inputs(["abc"])
    >>> explained = select_outputs(generator, batch, Target(position=1, token="c")).explained[0]
    >>> explained.position, explained.token, explained.label  # after "a", the score of "c"
    (1, 106, 'c')
    """

    position: int = None
    token: object = None


@dataclasses.dataclass(frozen=True)
class ExplainedOutput:
    """The output one row explains, resolved.

    Attributes:
        sequence: the name of the sequence `position` belongs to
            (`"tokens"` or `"target"`), or `None` for a classifier.
        position: the position (non-negative), or `None` for a classifier.
        token: the class index or token id.
        label: the class's label name or the token's string.
        score: the explained scalar's value at the input.

    Example:
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=1,
    ...     label_names=["no", "yes"])
    >>> batch = model.texts_to_inputs(["good"])
    >>> explained = select_outputs(model, batch, target="no", score="log_prob").explained[0]
    >>> explained.sequence, explained.position, explained.token, explained.label
    (None, None, 0, 'no')
    >>> explained.score < 0  # a log-probability
    True
    """

    sequence: object
    position: object
    token: int
    label: str
    score: float


def _as_target(spec):
    if spec is None:
        return Target()
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"position", "token"})
        if unknown:
            raise ValueError(
                f"A `target` dict takes the keys 'position' and 'token'. Received: {unknown}"
            )
        return Target(**spec)
    if isinstance(spec, (numbers.Integral, str)) and not isinstance(spec, bool):
        return Target(token=spec)
    raise ValueError(
        "`target` must be None, a class index, a label name, a token id or string, a dict "
        f"with 'position' and/or 'token', or a `Target`. Received: {spec!r:.80}"
    )


class OutputSelector:
    """The explained output of each row of a batch, and the function that
    picks it from the task's logits.

    Built by `select_outputs`; calling it on logits (of the same batch, or
    of the batch repeated: row `r` of the logits belongs to row
    `r % batch_size`) returns one differentiable float32 scalar per row.

    Attributes:
        explained: one `ExplainedOutput` per row.
        score: `"logit"` or `"log_prob"`.

    Example:
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    >>> batch = generator.texts_to_inputs(["abc", "xy"])
    >>> selector = select_outputs(generator, batch, target="z")
    >>> scores = selector(generator(batch.inputs))  # float32 (batch,), differentiable
    >>> tuple(scores.shape), [explained.position for explained in selector.explained]
    ((2,), [3, 2])
    >>> bool(np.allclose(ops.convert_to_numpy(scores),
    ...                  [explained.score for explained in selector.explained], atol=1e-5))
    True
    """

    def __init__(self, positions, tokens, score, explained):
        self.positions = positions
        self.tokens = np.asarray(tokens, "int32")
        self.score = score
        self.explained = explained

    def __call__(self, logits):
        logits = ops.cast(logits, "float32")
        if self.score == "log_prob":
            logits = ops.log_softmax(logits, axis=-1)
        repeats = ops.shape(logits)[0] // len(self.tokens)
        tokens = ops.one_hot(np.tile(self.tokens, repeats), logits.shape[-1], dtype="float32")
        if self.positions is None:
            return ops.sum(logits * tokens, axis=-1)
        positions = ops.one_hot(
            np.tile(self.positions, repeats), logits.shape[1], dtype="float32"
        )
        at_position = ops.sum(logits * positions[:, :, None], axis=1)
        return ops.sum(at_position * tokens, axis=-1)


def select_outputs(model, batch, target=None, score="logit", logits=None):
    """Resolves `target` for each row of `batch` into an `OutputSelector`.

    Args:
        model: a task.
        batch: the `TextInputs` (from `model.texts_to_inputs`).
        target: one specification for every row, or a list with one per
            row: `None` (the prediction at the default position), a class
            index or label name (classifier), a token id or string, a dict
            `{"position": p, "token": t}` or a `Target`.
        score: `"logit"` (default: the pre-softmax score) or `"log_prob"`
            (log-softmax over the classes or the vocabulary).
        logits: the task's logits on `batch`, if already computed.

    Returns:
        An `OutputSelector`; `selector(logits)` gives the `(batch,)` scores.

    Example:
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=1,
    ...     label_names=["no", "yes"])
    >>> batch = model.texts_to_inputs(["good"])
    >>> selector = select_outputs(model, batch, target="yes")
    >>> selector.explained[0].token, selector.explained[0].label
    (1, 'yes')
    """
    score = check_choice("score", score, SCORES)
    rows = batch.batch_size
    if isinstance(target, (list, tuple)):
        if len(target) != rows:
            raise ValueError(
                f"`target` as a list needs one entry per text: {rows} texts, "
                f"{len(target)} targets"
            )
        specs = [_as_target(spec) for spec in target]
    else:
        specs = [_as_target(target)] * rows
    if logits is None:
        logits = model.logits_from_backbone(model.backbone(batch.inputs), batch.inputs)
    logits = np.asarray(ops.convert_to_numpy(ops.cast(logits, "float32")))
    if score == "log_prob":
        shifted = logits - logits.max(-1, keepdims=True)
        logits = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    if logits.ndim == 2:
        return _select_classes(model, specs, logits, score)
    return _select_tokens(model, batch, specs, logits, score)


def _select_classes(model, specs, logits, score):
    names = getattr(model, "label_names", None)
    tokens, explained = [], []
    for row, spec in enumerate(specs):
        if spec.position is not None:
            raise ValueError(
                "A classifier explains a class, not a position: `target.position` must be "
                f"None. Received: position={spec.position}"
            )
        token = spec.token
        if token is None:
            token = int(np.argmax(logits[row]))
        elif isinstance(token, str):
            if not names or token not in names:
                raise ValueError(
                    f"`target` {token!r} is not a label name of this classifier (its labels: "
                    f"{names}). Pass a class index instead."
                )
            token = names.index(token)
        elif not 0 <= token < logits.shape[-1]:
            raise ValueError(
                f"`target` must be a class index in [0, {logits.shape[-1]}). Received: {token}"
            )
        token = int(token)
        label = names[token] if names else str(token)
        tokens.append(token)
        explained.append(ExplainedOutput(None, None, token, label, float(logits[row, token])))
    return OutputSelector(None, tokens, score, explained)


def _output_tokenizer(model):
    return getattr(model, "target_tokenizer", None) or model.tokenizer


def _select_tokens(model, batch, specs, logits, score):
    sequence = "target" if "target" in batch.tokens else "tokens"
    tokenizer = _output_tokenizer(model)
    vocabulary = logits.shape[-1]
    ids = batch.inputs.get("target_ids", batch.inputs.get("token_ids"))
    positions, tokens, explained = [], [], []
    for row, spec in enumerate(specs):
        length = len(batch.tokens[sequence][row])
        position = spec.position
        if position is None:
            position = length - 1
            if model.task_name == "masked_lm":
                masked = np.flatnonzero(ids[row, :length] == tokenizer.mask_id)
                if not len(masked):
                    raise ValueError(
                        "A masked language model explains the prediction at a `[MASK]`: text "
                        f"{row} has none. Put a literal [MASK] in it or pass "
                        "`target={'position': p}`."
                    )
                position = int(masked[0])
        elif not isinstance(position, numbers.Integral) or isinstance(position, bool):
            raise ValueError(f"`target.position` must be an int. Received: {position!r}")
        elif -length <= position < 0:
            position += length
        if not 0 <= position < length:
            raise ValueError(
                f"`target.position` must lie in the {length} real {sequence} of text {row} "
                f"(0 .. {length - 1}, or -{length} .. -1). Received: position={spec.position}"
            )
        token = spec.token
        if token is None:
            token = int(np.argmax(logits[row, position]))
        elif isinstance(token, str):
            token = tokenizer.token_to_id(token)
        elif not 0 <= token < vocabulary:
            raise ValueError(
                f"`target.token` must be a token id in [0, {vocabulary}). Received: {token}"
            )
        token = int(token)
        positions.append(position)
        tokens.append(token)
        explained.append(
            ExplainedOutput(
                sequence, position, token, tokenizer.id_to_token(token),
                float(logits[row, position, token]),
            )
        )
    return OutputSelector(np.asarray(positions, "int32"), tokens, score, explained)
