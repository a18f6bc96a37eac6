import math
import pickle
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_attn.utils.arguments import (
    ArgumentError,
    check_boolean,
    check_choice,
    check_fraction,
    check_ids_in_range,
    check_list_of_choices,
    check_non_negative_int,
    check_non_negative_number,
    check_number,
    check_number_in_range,
    check_number_or_scalar_tensor,
    check_positive_int,
    check_positive_number,
    check_rank,
    check_rate,
    check_same_batch,
    check_string,
    check_string_list,
    check_unit_interval,
)


def _message(check, *args, **kwargs):
    with pytest.raises(ArgumentError) as info:
        check(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    return str(info.value)


# ------------------------------------------------------------ accepted values


@pytest.mark.parametrize(
    "check, value, expected",
    [
        (check_positive_int, 3, 3),
        (check_positive_int, np.int64(7), 7),
        (check_non_negative_int, 0, 0),
        (check_positive_number, 0.5, 0.5),
        (check_non_negative_number, 0, 0),
        (check_non_negative_number, 2.5, 2.5),
        (check_number, -3.25, -3.25),
        (check_number, 4, 4),
        (check_rate, 0, 0.0),
        (check_rate, 0.999, 0.999),
        (check_fraction, 0.1, 0.1),
        (check_unit_interval, 1, 1.0),
        (check_unit_interval, 1e-9, 1e-9),
        (check_boolean, False, False),
        (check_string, "13a", "13a"),
        (check_string_list, ["a", "b"], ["a", "b"]),
    ],
)
def test_accepted_values_come_back_normalized(check, value, expected):
    result = check("x", value)
    assert result == expected and type(result) is type(expected)


def test_int_checks_return_python_ints_and_float_checks_python_floats():
    assert type(check_non_negative_int("x", np.int32(4))) is int
    assert type(check_rate("x", np.float32(0.25))) is float
    assert type(check_unit_interval("x", 1)) is float


def test_none_only_where_allowed():
    for check in (check_positive_int, check_non_negative_int, check_positive_number,
                  check_non_negative_number, check_number):
        assert check("x", None, allow_none=True) is None
        assert "or None" in _message(check, "x", "a", allow_none=True)
        _message(check, "x", None)


# ----------------------------------------------------------- rejected values


@pytest.mark.parametrize(
    "check, value, message",
    [
        (check_positive_int, 0, "`units` must be a positive integer. Received: units=0"),
        (check_positive_int, 2.0, "`units` must be a positive integer. Received: units=2.0"),
        (check_positive_int, True, "`units` must be a positive integer. Received: units=True"),
        (check_non_negative_int, -1,
         "`units` must be a non-negative integer. Received: units=-1"),
        (check_positive_number, 0.0, "`units` must be a positive number. Received: units=0.0"),
        (check_non_negative_number, -0.5,
         "`units` must be a number >= 0. Received: units=-0.5"),
        (check_non_negative_number, math.inf,
         "`units` must be a number >= 0. Received: units=inf"),
        (check_non_negative_number, "1", "`units` must be a number >= 0. Received: units='1'"),
        (check_number, math.nan, "`units` must be a finite number. Received: units=nan"),
        (check_number, False, "`units` must be a finite number. Received: units=False"),
        (check_rate, 1.0, "`units` must be a number in [0, 1). Received: units=1.0"),
        (check_rate, -0.1, "`units` must be a number in [0, 1). Received: units=-0.1"),
        (check_fraction, 0, "`units` must be a number strictly between 0 and 1. Received: units=0"),
        (check_fraction, 1, "`units` must be a number strictly between 0 and 1. Received: units=1"),
        (check_unit_interval, 0.0, "`units` must be a number in (0, 1]. Received: units=0.0"),
        (check_unit_interval, 1.5, "`units` must be a number in (0, 1]. Received: units=1.5"),
        (check_boolean, 1, "`units` must be a boolean, true or false. Received: units=1"),
        (check_boolean, "yes",
         "`units` must be a boolean, true or false. Received: units='yes'"),
        (check_string, "", "`units` must be a non-empty string. Received: units=''"),
        (check_string, 3, "`units` must be a non-empty string. Received: units=3"),
        (check_string_list, ["a", ""],
         "`units` must be a list of non-empty strings. Received: units=['a', '']"),
        (check_string_list, "a",
         "`units` must be a list of non-empty strings. Received: units='a'"),
    ],
)
def test_rejected_values_name_argument_expectation_and_value(check, value, message):
    assert _message(check, "units", value) == message


def test_number_in_range_writes_its_bounds_and_honours_each_side():
    assert check_number_in_range("beta", 2, 1, 3) == 2.0
    assert check_number_in_range("beta", 1, 1, 3) == 1.0
    assert check_number_in_range("beta", 3, 1, 3) == 3.0
    assert _message(check_number_in_range, "beta", 1, 1, 3, include_low=False) == (
        "`beta` must be a number in (1, 3]. Received: beta=1"
    )
    assert _message(check_number_in_range, "beta", 3, 1, 3, include_high=False) == (
        "`beta` must be a number in [1, 3). Received: beta=3"
    )
    assert _message(check_number_in_range, "beta", None, 1, 3) == (
        "`beta` must be a number in [1, 3]. Received: beta=None"
    )
    assert "`beta` must be odd" in _message(
        check_number_in_range, "beta", 9, 1, 3, expected="odd"
    )


def test_choice_lists_the_choices_as_asked():
    assert check_choice("mode", "min", ("min", "max")) == "min"
    assert check_choice("mode", None, (None, "max")) is None
    assert _message(check_choice, "mode", "avg", ("min", "max")) == (
        "`mode` must be one of 'min', 'max'. Received: mode='avg'"
    )
    assert _message(check_choice, "mode", "avg", ["min", "max"], show=str) == (
        "`mode` must be one of min, max. Received: mode='avg'"
    )


def test_list_of_choices_names_the_bad_item():
    assert check_list_of_choices("requires", ["gpu"], ("gpu", "download")) == ["gpu"]
    assert check_list_of_choices("requires", [], ("gpu",)) == []
    with pytest.raises(ArgumentError) as info:
        check_list_of_choices("requires", ["gpu", "tpu"], ("gpu", "download"), show=str)
    error = info.value
    assert (error.name, error.expected, error.value) == ("requires[1]", "one of gpu, download",
                                                           "tpu")
    assert _message(check_list_of_choices, "requires", "gpu", ("gpu",)) == (
        "`requires` must be a list of items from 'gpu'. Received: requires='gpu'"
    )


def test_rank_is_checked_against_one_or_several_ranks():
    check_rank("query", (2, 3, 4), 3)
    check_rank("mask", (2, 3), (2, 3))
    check_rank("query", None, 3)  # unknown shapes pass
    message = _message(check_rank, "query", (2, 3), 3, "(batch, time, features)")
    assert message == (
        "`query` must have rank 3 (batch, time, features). Received: query with shape (2, 3) "
        "(rank 2)"
    )
    assert "must have rank 2 or 3." in _message(check_rank, "mask", (1,), (2, 3))


def test_the_error_keeps_its_parts_and_survives_pickling():
    with pytest.raises(ArgumentError) as info:
        check_positive_int("epochs", "ten")
    error = info.value
    assert (error.name, error.expected, error.value, error.verb) == (
        "epochs", "a positive integer", "ten", "be"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ArgumentError and str(copy) == str(error)
    assert (copy.name, copy.expected, copy.value) == ("epochs", "a positive integer", "ten")


def test_the_error_can_be_rebuilt_from_its_message_alone():
    # Keras re-raises errors from a layer's call() as `type(error)(message)`.
    rebuilt = ArgumentError("`units` must be a positive integer. Received: units=0\n(more)")
    assert isinstance(rebuilt, ValueError) and str(rebuilt).endswith("(more)")
    assert rebuilt.name is None


# ------------------------------------------------------------------ tensors


def test_numbers_or_scalar_tensors_check_python_numbers_now():
    assert check_number_or_scalar_tensor("top_p", 0.5, check_unit_interval) == 0.5
    value = check_number_or_scalar_tensor("top_k", np.int64(3), check_non_negative_int)
    assert value == 3 and type(value) is int
    for bad in (1.5, None, True, "0.5"):
        with pytest.raises(ArgumentError, match=re.escape("`top_p` must be a number in (0, 1]")):
            check_number_or_scalar_tensor("top_p", bad, check_unit_interval)


def test_numbers_or_scalar_tensors_check_known_tensor_values():
    tensor = tf.constant(0.5)
    assert check_number_or_scalar_tensor("top_p", tensor, check_unit_interval) is tensor
    with pytest.raises(ArgumentError,
                       match=re.escape("`top_p` must be a number in (0, 1]. Received: top_p=2.0")):
        check_number_or_scalar_tensor("top_p", tf.constant(2.0), check_unit_interval)
    with pytest.raises(ArgumentError, match="Received: top_k=-1"):
        check_number_or_scalar_tensor("top_k", tf.constant(-1), check_non_negative_int)
    with pytest.raises(ArgumentError, match=re.escape(
        "`top_p` must be a number or a scalar tensor. Received: top_p with shape (2,)"
    )):
        check_number_or_scalar_tensor("top_p", np.ones(2), check_unit_interval)


def test_numbers_or_scalar_tensors_leave_traced_values_to_the_graph():
    seen = []

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def traced(top_p):
        # Symbolic here: nothing to check while tracing, whatever the value.
        seen.append(check_number_or_scalar_tensor("top_p", top_p, check_unit_interval))
        return top_p * 2

    assert float(traced(tf.constant(5.0))) == 10.0
    assert len(seen) == 1 and isinstance(seen[0], tf.Tensor)


def test_check_ids_in_range_names_the_first_id_out_of_range():
    ids = np.array([[0, 5, 9], [3, 12, -1]])
    with pytest.raises(ValueError, match=r"`source_ids` must hold ids in \[0, 10\) \(the "
                                         r"vocabulary size\). Received: source_ids with values "
                                         r"from -1 to 12; first out of range: 12 at position "
                                         r"\(1, 1\)"):
        check_ids_in_range("source_ids", ids, 10)
    np.testing.assert_array_equal(check_ids_in_range("ids", ids[:1], 10), ids[:1])
    # Empty and symbolic ids pass unchecked (nothing to read).
    check_ids_in_range("ids", np.zeros((0, 3), "int32"), 1)
    traced = tf.function(lambda x: tf.shape(check_ids_in_range("ids", x, 1)))
    assert traced(tf.constant([[7]])).numpy().tolist() == [1, 1]


def test_check_same_batch_compares_known_batch_axes_only():
    check_same_batch([("a", (2, 3)), ("b", None), ("c", (None, 3)), ("d", (2,))])
    with pytest.raises(ValueError, match=r"`d` must have the batch size of `a` \(2\). "
                                         r"Received: d with shape \(4, 1\)"):
        check_same_batch([("a", (2, 3)), ("c", (None, 3)), ("d", (4, 1))])
