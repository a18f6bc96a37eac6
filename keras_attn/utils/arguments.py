"""Argument checks that raise a `ValueError` naming the argument, what was
expected and what was given.

Every public layer validates its constructor arguments and input ranks with
these helpers, so users get one consistent, readable message instead of an
error raised from deep inside a TensorFlow kernel.
"""

import numbers


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name, value, allow_none=False):
    """Raises unless `value` is an integer > 0 (or `None` when allowed)."""
    if value is None and allow_none:
        return value
    if not _is_int(value) or value <= 0:
        expected = "a positive integer" + (" or None" if allow_none else "")
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return int(value)


def check_positive_number(name, value, allow_none=False):
    """Raises unless `value` is a real number > 0 (or `None` when allowed)."""
    if value is None and allow_none:
        return value
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
        expected = "a positive number" + (" or None" if allow_none else "")
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return value


def check_non_negative_int(name, value):
    """Raises unless `value` is an integer >= 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(
            f"`{name}` must be a non-negative integer. Received: {name}={value!r}"
        )
    return int(value)


def check_rate(name, value):
    """Raises unless `value` is a number in [0, 1) (a dropout rate)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be a float in [0, 1). Received: {name}={value!r}")
    return float(value)


def check_choice(name, value, choices):
    """Raises unless `value` is one of `choices`."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {options}. Received: {name}={value!r}")
    return value


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
        raise ValueError(
            f"`{name}` must have rank {wanted}{layout}. "
            f"Received: {name} with shape {tuple(shape)} (rank {rank})"
        )
