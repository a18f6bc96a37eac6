import numpy as np
import pytest
import tensorflow as tf

from keras_attn.data import bucket_datasets, bucketed_batches, length_buckets

BOUNDARIES = [4, 8, 16]
WIDTH = 16
BATCH = 8


def _padded(num_examples=300, seed=0):
    """Rows of ids 1..49 of random lengths, padded with 0 to `WIDTH`."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, WIDTH + 1, num_examples)
    ids = np.zeros((num_examples, WIDTH), "int32")
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(1, 50, length)
    weights = (ids > 0).astype("float32")
    arrays = ({"token_ids": ids, "index": np.arange(num_examples)}, ids, weights)
    return arrays, lengths


def test_length_buckets():
    assert length_buckets([0, 3, 4, 5, 8, 9, 16], BOUNDARIES).tolist() == [0, 0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="`boundaries`.*17"):
        length_buckets([3, 17], BOUNDARIES)
    for bad in ([], [8, 4], [4, 4], [0, 4], [2.5, 4], ["a"]):
        with pytest.raises(ValueError, match="`boundaries`"):
            length_buckets([1], bad)
    with pytest.raises(ValueError, match="`lengths`"):
        length_buckets([[1, 2]], BOUNDARIES)


def test_batches_have_boundary_shapes_and_keep_every_example_but_the_remainders():
    arrays, lengths = _padded()
    dataset = bucketed_batches(arrays, lengths, BOUNDARIES, BATCH, shuffle=True, seed=3)
    counts = np.bincount(length_buckets(lengths, BOUNDARIES), minlength=len(BOUNDARIES))
    expected = int(sum(c // BATCH * BATCH for c in counts))
    assert int(dataset.cardinality()) == expected // BATCH

    seen, shapes = [], set()
    for inputs, ids, weights in dataset.as_numpy_iterator():
        width = ids.shape[1]
        shapes.add(ids.shape)
        assert ids.shape[0] == BATCH and width in BOUNDARIES
        assert inputs["token_ids"].shape == weights.shape == ids.shape
        for row, index in enumerate(inputs["index"]):
            length = lengths[index]
            # The example went to the smallest boundary that holds it ...
            assert width == min(b for b in BOUNDARIES if b >= length)
            # ... and lost nothing but padding.
            np.testing.assert_array_equal(ids[row], arrays[1][index, :width])
            assert weights[row].sum() == length
        seen.extend(inputs["index"].tolist())
    assert shapes == {(BATCH, b) for b in BOUNDARIES}
    assert len(seen) == len(set(seen)) == expected
    # Per bucket, fewer than a batch is left out.
    left_out = np.bincount(
        length_buckets(lengths[np.setdiff1d(np.arange(len(lengths)), seen)], BOUNDARIES),
        minlength=len(BOUNDARIES),
    )
    assert (left_out < BATCH).all() and (left_out == counts % BATCH).all()


def test_shuffle_is_seeded_and_reshuffles_each_epoch():
    arrays, lengths = _padded()

    def order(dataset):
        return [batch[0]["index"].tolist() for batch in dataset.as_numpy_iterator()]

    first = bucketed_batches(arrays, lengths, BOUNDARIES, BATCH, seed=1)
    again = bucketed_batches(arrays, lengths, BOUNDARIES, BATCH, seed=1)
    assert order(first) == order(again)
    assert order(first) != order(first)  # a new epoch, a new order
    plain = order(bucketed_batches(arrays, lengths, BOUNDARIES, BATCH, shuffle=False))
    assert plain[0] == sorted(plain[0])


def test_each_bucket_pipeline_has_static_shapes_and_compiles_once_per_bucket():
    arrays, lengths = _padded()
    buckets = bucket_datasets(arrays, lengths, BOUNDARIES + [32], BATCH, seed=0)
    assert [boundary for boundary, _ in buckets] == BOUNDARIES  # nobody reaches 32
    for boundary, dataset in buckets:
        inputs, ids, weights = dataset.element_spec
        assert inputs["token_ids"].shape == ids.shape == weights.shape == (BATCH, boundary)
        assert inputs["index"].shape == (BATCH,)

    @tf.function(jit_compile=True, reduce_retracing=False)
    def step(ids, weights):
        return tf.reduce_sum(tf.cast(ids, "float32") * weights)

    dataset = bucketed_batches(arrays, lengths, BOUNDARIES, BATCH, seed=0)
    assert dataset.element_spec[1].shape.as_list() == [BATCH, None]
    total = sum(float(step(ids, weights)) for _, ids, weights in dataset)
    assert total > 0
    assert step.experimental_get_tracing_count() == len(BOUNDARIES)


def test_wider_boundary_pads_and_bad_inputs_raise():
    arrays, lengths = _padded(64)
    dataset = bucketed_batches(arrays[1], lengths, [24], BATCH, shuffle=False, pad_value=-1)
    batch = next(iter(dataset)).numpy()
    assert batch.shape == (BATCH, 24) and (batch[:, WIDTH:] == -1).all()
    with pytest.raises(ValueError, match="batch_size"):
        bucketed_batches(arrays, lengths, BOUNDARIES, 1000)
    with pytest.raises(ValueError, match="`lengths`"):
        bucketed_batches(arrays, lengths[:-1], BOUNDARIES, BATCH)
    with pytest.raises(ValueError, match="axis 1"):
        bucketed_batches((arrays[1], arrays[1][:, :8]), lengths, BOUNDARIES, BATCH)
