"""Argument checks that raise a `ValueError` naming the argument, what was
expected and what was given.

They are the one set of checks in keras-attn: layers and models check their
constructor arguments and input ranks with them, decoding checks its options
(Python numbers or tensors), the recipe schema checks every recipe key and the
command line its option values. Each check returns the value it accepted
(normalized where its docstring says so) and otherwise raises an
`ArgumentError`, a `ValueError` whose message reads

    `top_p` must be a number in (0, 1]. Received: top_p=1.5

and whose `name`, `expected` and `value` let the recipe schema and the command
line phrase the same finding their own way
(`training.learning_rate: must be a positive number (got 'fast')`).

Example:

```python
self.dropout = check_rate("dropout", dropout)
top_p = check_number_or_scalar_tensor("top_p", top_p, check_unit_interval)
```
"""

import math
import numbers

import numpy as np
from keras import ops


class ArgumentError(ValueError):
    """A bad argument: `` `name` must <verb> <expected>. Received: ...``.

    Build one with `ArgumentError.of(name, expected, value)`. The constructor
    takes the message alone as well, as Keras does when it re-raises an error
    from inside a layer call with the call's arguments appended.

    Attributes:
        name: the argument as shown (e.g. `"top_p"`, `"requires[0]"`).
        expected: what it must be, e.g. `"a positive integer"`.
        value: what was given.
        verb: `"be"`, or e.g. `"have"` for `"have rank 3"`.
    """

    def __init__(self, message, name=None, expected=None, value=None, verb="be"):
        super().__init__(message)
        self.name = name
        self.expected = expected
        self.value = value
        self.verb = verb

    @classmethod
    def of(cls, name, expected, value, received=None, verb="be"):
        """The error for argument `name`; `received` replaces the default
        `name=value!r` after "Received:" (e.g. a tensor's shape)."""
        shown = f"{name}={value!r}" if received is None else received
        message = f"`{name}` must {verb} {expected}. Received: {shown}"
        return cls(message, name=name, expected=expected, value=value, verb=verb)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_finite_number(value):
    return _is_number(value) and math.isfinite(value)


def _checked(name, value, valid, expected, allow_none=False):
    """The core of the value checks: `value` if `valid(value)`, else raises."""
    if value is None and allow_none:
        return value
    if not valid(value):
        raise ArgumentError.of(name, expected + (" or None" if allow_none else ""), value)
    return value


# ---------------------------------------------------------------- numbers


def check_positive_int(name, value, allow_none=False):
    """Raises unless `value` is an integer > 0 (or `None` when allowed); returns an `int`."""
    value = _checked(name, value, lambda v: _is_int(v) and v > 0, "a positive integer", allow_none)
    return value if value is None else int(value)


def check_non_negative_int(name, value, allow_none=False):
    """Raises unless `value` is an integer >= 0 (or `None` when allowed); returns an `int`."""
    value = _checked(
        name, value, lambda v: _is_int(v) and v >= 0, "a non-negative integer", allow_none
    )
    return value if value is None else int(value)


def check_positive_number(name, value, allow_none=False):
    """Raises unless `value` is a real number > 0 (or `None` when allowed)."""
    return _checked(name, value, lambda v: _is_number(v) and v > 0, "a positive number", allow_none)


def check_non_negative_number(name, value, allow_none=False):
    """Raises unless `value` is a finite real number >= 0 (or `None` when allowed)."""
    return _checked(
        name, value, lambda v: _is_finite_number(v) and v >= 0, "a number >= 0", allow_none
    )


def check_number(name, value, allow_none=False):
    """Raises unless `value` is a finite real number (not a bool)."""
    return _checked(name, value, _is_finite_number, "a finite number", allow_none)


def check_number_in_range(
    name, value, low, high, include_low=True, include_high=True, expected=None
):
    """Raises unless `value` is a real number between `low` and `high`.

    Args:
        name: the argument name, used in the message.
        value: the value to check.
        low, high: the bounds.
        include_low, include_high: whether each bound itself is allowed.
        expected: the expectation shown in the message; default
            `"a number in [low, high)"` with the brackets the bounds imply.

    Returns:
        `value` as a `float`.
    """

    def valid(v):
        if not _is_number(v):
            return False
        above = v >= low if include_low else v > low
        below = v <= high if include_high else v < high
        return above and below

    if expected is None:
        opening, closing = "[" if include_low else "(", "]" if include_high else ")"
        expected = f"a number in {opening}{low}, {high}{closing}"
    return float(_checked(name, value, valid, expected))


def check_rate(name, value):
    """Raises unless `value` is a number in [0, 1) (a dropout rate); returns a `float`."""
    return check_number_in_range(name, value, 0, 1, include_high=False)


def check_fraction(name, value):
    """Raises unless `value` is a number strictly between 0 and 1 (a share of
    something that must keep a part on both sides); returns a `float`."""
    return check_number_in_range(
        name, value, 0, 1, include_low=False, include_high=False,
        expected="a number strictly between 0 and 1",
    )


def check_unit_interval(name, value):
    """Raises unless `value` is a number in (0, 1] (e.g. nucleus sampling's
    `top_p`, where 1 keeps everything); returns a `float`."""
    return check_number_in_range(name, value, 0, 1, include_low=False)


# ------------------------------------------------------ other Python values


def check_boolean(name, value):
    """Raises unless `value` is `True` or `False` (not 0 / 1, not a string)."""
    return _checked(name, value, lambda v: isinstance(v, bool), "a boolean, true or false")


def check_string(name, value):
    """Raises unless `value` is a non-empty `str`."""
    return _checked(name, value, lambda v: isinstance(v, str) and v, "a non-empty string")


def check_string_list(name, value):
    """Raises unless `value` is a list of non-empty strings; returns a new list."""
    return list(
        _checked(
            name,
            value,
            lambda v: isinstance(v, list) and all(isinstance(s, str) and s for s in v),
            "a list of non-empty strings",
        )
    )


def _listed(choices, show):
    return ", ".join(show(c) for c in choices)


def check_choice(name, value, choices, show=repr):
    """Raises unless `value` is one of `choices`.

    Args:
        show: how each choice is written in the message (`repr` by default;
            `str` for readers who type the bare words, e.g. in YAML).
    """
    choices = tuple(choices)
    return _checked(name, value, lambda v: v in choices, f"one of {_listed(choices, show)}")


def check_list_of_choices(name, value, choices, show=repr):
    """Raises unless `value` is a list whose every item is one of `choices`;
    an item is named `name[index]`. Returns a new list."""
    choices = tuple(choices)
    _checked(name, value, lambda v: isinstance(v, list),
             f"a list of items from {_listed(choices, show)}")
    return [check_choice(f"{name}[{i}]", item, choices, show) for i, item in enumerate(value)]


# ------------------------------------------------------------------ tensors


def is_python_number(value):
    """True for Python / NumPy scalars (not bools), which are static options."""
    return isinstance(value, (numbers.Number, np.number)) and not isinstance(value, bool)


def concrete_value(value):
    """`value` as a NumPy array when it is known now (Python, NumPy, eager
    tensor), `None` when it is symbolic (traced inside a compiled function)."""
    if isinstance(value, (numbers.Number, np.ndarray, np.number, list, tuple)):
        return np.asarray(value)
    try:
        return np.asarray(ops.convert_to_numpy(value))
    except Exception:
        return None


def check_number_or_scalar_tensor(name, value, check):
    """Checks an option that may be a Python number or a scalar tensor.

    A Python or NumPy number goes through `check(name, number)` now. A tensor
    must be a scalar; its value goes through `check` when it is known (an
    eager tensor) and is left to the graph when it is traced (a serving input,
    say), where the caller must handle any value.

    Args:
        name: the argument name, used in the message.
        value: a number or a scalar tensor.
        check: one of the number checks, e.g. `check_unit_interval`.

    Returns:
        What `check` returned for a number, else the tensor.
    """
    if value is None or isinstance(value, (bool, str, bytes)):
        return check(name, value)  # raises: the checks take numbers only
    if is_python_number(value):
        return check(name, value.item() if isinstance(value, np.generic) else value)
    tensor = ops.convert_to_tensor(value)
    if len(tensor.shape) != 0:
        raise ArgumentError.of(
            name, "a number or a scalar tensor", value,
            received=f"{name} with shape {tuple(tensor.shape)}",
        )
    known = concrete_value(tensor)
    if known is not None:
        check(name, known.item())
    return tensor


def check_rank(name, shape, ranks, description=None):
    """Raises unless a tensor shape has one of the given ranks.

    Args:
        name: the argument name, used in the message.
        shape: the tensor's shape (tuple, `TensorShape` or `None`).
        ranks: an int or a tuple of allowed ranks.
        description: optional layout hint, e.g. `"(batch, time, features)"`.
    """
    if shape is None:
        return
    ranks = (ranks,) if _is_int(ranks) else tuple(ranks)
    rank = len(shape)
    if rank not in ranks:
        wanted = " or ".join(str(r) for r in ranks)
        layout = f" {description}" if description else ""
        raise ArgumentError.of(
            name, f"rank {wanted}{layout}", shape,
            received=f"{name} with shape {tuple(shape)} (rank {rank})", verb="have",
        )


def check_same_length(name, value, other_name, other):
    """Raises unless the sequences `value` and `other` have one item each
    for the other (e.g. texts and their labels).

    Example:
    >>> check_same_length("texts", ["a", "b"], "labels", [0])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_attn.utils.arguments.ArgumentError: `texts` and `labels` must ... 2 texts and 1 labels
    """
    if len(value) != len(other):
        raise ArgumentError(
            f"`{name}` and `{other_name}` must have the same length. "
            f"Received: {len(value)} {name} and {len(other)} {other_name}"
        )


def check_ids_in_range(name, ids, size, what="the vocabulary size"):
    """Raises unless every token (or segment) id in `ids` is in `[0, size)`.

    Checked when the values are known (Python, NumPy, eager tensors); a
    symbolic tensor (traced by `fit`, `predict`, a `tf.function` or an
    export) is returned unchecked, so compiled steps pay nothing: there an
    id out of range is not caught (see the callers' docstrings).

    Args:
        name: the argument name, used in the message.
        ids: int ids, any shape.
        size: the exclusive upper bound (e.g. the vocabulary size).
        what: what `size` is, for the message.

    Returns:
        `ids`, unchanged.
    """
    values = concrete_value(ids)
    if values is None or values.size == 0:
        return ids
    low, high = values.min(), values.max()
    if low < 0 or high >= size:
        bad = (values < 0) | (values >= size)
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ArgumentError.of(
            name, f"ids in [0, {size}) ({what})", ids,
            received=(
                f"{name} with values from {low} to {high}; first out of range: "
                f"{values[where]} at position {where}"
            ),
            verb="hold",
        )
    return ids


def check_same_batch(named_shapes):
    """Raises unless the given inputs have one batch size (axis 0).

    Args:
        named_shapes: `(name, shape)` pairs; shapes may be `None` (absent
            input) and axes `None` (unknown while tracing), which are skipped.

    Example:
    >>> check_same_batch([("token_ids", (2, 5)), ("padding_mask", (3, 5))])
    Traceback (most recent call last):
    ...
    keras_attn.utils.arguments.ArgumentError: `padding_mask` must have the batch size of \
`token_ids` (2). Received: padding_mask with shape (3, 5)
    """
    known = [(name, tuple(shape)) for name, shape in named_shapes
             if shape is not None and len(shape) and shape[0] is not None]
    if not known:
        return
    first_name, first_shape = known[0]
    for name, shape in known[1:]:
        if shape[0] != first_shape[0]:
            raise ArgumentError.of(
                name, f"the batch size of `{first_name}` ({first_shape[0]})", shape,
                received=f"{name} with shape {shape}", verb="have",
            )
