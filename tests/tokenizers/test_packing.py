import numpy as np
import pytest
import tensorflow as tf

from keras_attn.tokenizers import TruncationReport, pack, pack_pair

T, F = True, False
ROWS = [[10, 11], [10, 11, 12, 13, 14, 15], []]


def numpy_all(outputs):
    return [np.asarray(output).tolist() for output in outputs]


def test_pack_without_specials_pads_and_truncates_at_the_end():
    ids, mask, truncated = numpy_all(pack(ROWS, 4))
    assert ids == [[10, 11, 0, 0], [10, 11, 12, 13], [0, 0, 0, 0]]
    assert mask == [[T, T, F, F], [T, T, T, T], [F, F, F, F]]
    assert truncated == [0, 2, 0]


def test_pack_with_bos_and_eos_keeps_eos_on_truncation():
    ids, mask, truncated = numpy_all(pack(ROWS, 5, add_bos=True, add_eos=True))
    assert ids == [[2, 10, 11, 3, 0], [2, 10, 11, 12, 3], [2, 3, 0, 0, 0]]
    assert mask == [[T, T, T, T, F], [T, T, T, T, T], [T, T, F, F, F]]
    assert truncated == [0, 3, 0]


def test_pack_eos_only_custom_ids_and_exact_fit():
    ids, mask, truncated = numpy_all(
        pack([[10, 11, 12], [10, 11, 12, 13]], 4, add_eos=True, eos_id=99, pad_id=-1)
    )
    assert ids == [[10, 11, 12, 99], [10, 11, 12, 99]]
    assert mask == [[T, T, T, T], [T, T, T, T]]
    assert truncated == [0, 1]


def test_pack_accepts_ragged_dense_and_single_sequences():
    ragged = tf.ragged.constant(ROWS, dtype=tf.int64)
    assert numpy_all(pack(ragged, 4)) == numpy_all(pack(ROWS, 4))
    ids, mask, truncated = numpy_all(pack(np.array([[1, 2, 3]]), 2))
    assert (ids, mask, truncated) == ([[1, 2]], [[T, T]], [1])
    ids, mask, truncated = numpy_all(pack(tf.constant([7, 8, 9]), 3, add_bos=True))
    assert (ids, mask, truncated) == ([2, 7, 8], [T, T, T], 1)


def test_pack_has_static_shapes_in_tf_function():
    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1)])
    def packed(ids):
        return pack(ids, 6, add_bos=True, add_eos=True)

    ids, mask, truncated = packed.get_concrete_function().structured_outputs
    assert ids.shape.as_list() == [None, 6] and ids.dtype == tf.int32
    assert mask.shape.as_list() == [None, 6] and mask.dtype == tf.bool
    assert truncated.shape.as_list() == [None] and truncated.dtype == tf.int32
    ragged = tf.ragged.constant(ROWS, dtype=tf.int32)
    assert numpy_all(packed(ragged)) == numpy_all(pack(ROWS, 6, add_bos=True, add_eos=True))


def test_pack_in_dataset_map():
    dataset = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(ROWS)).map(
        lambda row: pack(row, 4, add_eos=True)
    )
    assert dataset.element_spec[0].shape.as_list() == [4]
    assert [int(truncated) for _, _, truncated in dataset] == [0, 3, 0]


def test_pack_pair_layout_and_segment_ids():
    ids, segments, mask, truncated = numpy_all(pack_pair([[10, 11], [10]], [[20], [20, 21]], 8))
    assert ids == [[5, 10, 11, 4, 20, 4, 0, 0], [5, 10, 4, 20, 21, 4, 0, 0]]
    assert segments == [[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 0, 0]]
    assert mask == [[T, T, T, T, T, T, F, F], [T, T, T, T, T, T, F, F]]
    assert truncated == [0, 0]


def test_pack_pair_truncates_the_longer_segment_first():
    first = [[10, 11, 12, 13, 14, 15], [10], [10, 11, 12, 13, 14], [10, 11, 12, 13]]
    second = [[20], [20, 21, 22, 23, 24, 25], [20, 21, 22, 23, 24], [20, 21, 22, 23]]
    ids, segments, mask, truncated = numpy_all(pack_pair(first, second, 8))
    assert ids == [
        [5, 10, 11, 12, 13, 4, 20, 4],  # long first, short second kept whole
        [5, 10, 4, 20, 21, 22, 23, 4],  # short first kept whole
        [5, 10, 11, 12, 4, 20, 21, 4],  # both long: the first keeps the odd token
        [5, 10, 11, 12, 4, 20, 21, 4],
    ]
    assert segments == [[0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]] + [
        [0, 0, 0, 0, 0, 1, 1, 1]
    ] * 2
    assert mask == [[T] * 8] * 4
    assert truncated == [2, 2, 5, 3]


def longest_first_reference(first_length, second_length, capacity):
    """One token at a time from the longer segment, from the second on ties."""
    while first_length + second_length > capacity:
        if first_length > second_length:
            first_length -= 1
        else:
            second_length -= 1
    return first_length, second_length


def test_pack_pair_matches_one_token_at_a_time_truncation():
    lengths = [(a, b) for a in range(9) for b in range(9)]
    first = [list(range(100, 100 + a)) for a, _ in lengths]
    second = [list(range(200, 200 + b)) for _, b in lengths]
    ids, segments, _, truncated = numpy_all(pack_pair(first, second, 9))
    for row, (a, b) in enumerate(lengths):
        keep_a, keep_b = longest_first_reference(a, b, 9 - 3)
        expected = [5, *range(100, 100 + keep_a), 4, *range(200, 200 + keep_b), 4]
        assert ids[row] == expected + [0] * (9 - len(expected))
        assert sum(segments[row]) == keep_b + 1
        assert truncated[row] == a - keep_a + b - keep_b


def test_pack_pair_static_shapes_and_single_pair():
    spec = tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1)

    @tf.function(input_signature=[spec, spec])
    def packed(first, second):
        return pack_pair(first, second, 6)

    outputs = packed.get_concrete_function().structured_outputs
    assert [output.shape.as_list() for output in outputs] == [[None, 6]] * 3 + [[None]]
    ids, segments, mask, truncated = numpy_all(pack_pair([10, 11, 12], [20, 21], 6))
    assert (ids, segments, truncated) == ([5, 10, 11, 4, 20, 4], [0, 0, 0, 0, 1, 1], 2)


def test_truncation_report_numbers():
    report = TruncationReport.from_counts([0, 2, 0, 5])
    assert (report.rows, report.rows_truncated, report.tokens_dropped) == (4, 2, 7)
    assert report.max_tokens_dropped == 5 and report.fraction_truncated == 0.5
    assert str(report) == "2 of 4 rows (50.0%) truncated, 7 tokens dropped (at most 5 in a row)"

    _, _, truncated = pack(ROWS, 3, add_eos=True)
    total = report + TruncationReport.from_counts(truncated)
    assert total.as_dict() == {
        "rows": 7,
        "rows_truncated": 3,
        "tokens_dropped": 11,
        "max_tokens_dropped": 5,
        "fraction_truncated": 3 / 7,
    }
    assert TruncationReport.from_counts([]).fraction_truncated == 0.0
    with pytest.raises(ValueError, match="truncated"):
        TruncationReport.from_counts([1, -1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="sequence_length"):
        pack(ROWS, 0)
    with pytest.raises(ValueError, match="sequence_length"):
        pack(ROWS, 2, add_bos=True, add_eos=True)
    with pytest.raises(ValueError, match="sequence_length"):
        pack_pair(ROWS, ROWS, 3)
    with pytest.raises(ValueError, match="ids"):
        pack([[1.5, 2.0]], 4)
    with pytest.raises(ValueError, match="ids"):
        pack(np.zeros((2, 2, 2), "int32"), 4)
    with pytest.raises(ValueError, match="batch size"):
        pack_pair([[1], [2]], [[3]], 6)
    with pytest.raises(ValueError, match="second_ids"):
        pack_pair([[1], [2]], [3], 6)
