"""Length bucketing in the tasks' `make_dataset` (the default)."""

import numpy as np
import pytest

from keras_attn.data import bucketed_batches, choose_boundaries, choose_group_boundaries
from keras_attn.models import Generator, Translator


def _long_tailed_texts(count=96, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(0.35, count), 12)
    return ["ab cd " * int(n) for n in lengths], ["xy" * int(n) for n in lengths]


def test_choose_boundaries_fit_the_data_and_cap_at_the_width():
    assert choose_boundaries([3, 4, 5, 6, 9, 12, 30, 60], max_length=64) == [8, 16, 32, 64]
    assert choose_boundaries([5] * 10, max_length=64) == [8]  # one shape is enough
    assert choose_boundaries([61, 62], max_length=62) == [62]
    with pytest.raises(ValueError, match="max_length"):
        choose_boundaries([70], max_length=64)
    groups = choose_group_boundaries({"a": [1, 2, 30], "b": [5, 5, 5]}, {"a": 32, "b": 8}, 3)
    assert groups == {"a": [8, 32], "b": [8, 8]}


def test_grouped_buckets_cut_each_sequence_to_its_own_width_and_keep_every_example():
    rng = np.random.default_rng(1)
    count = 50
    source_lengths = rng.integers(1, 33, count)
    target_lengths = rng.integers(1, 9, count)
    source = np.where(np.arange(32) < source_lengths[:, None], 5, 0)
    target = np.where(np.arange(8) < target_lengths[:, None], 7, 0)
    arrays = ({"source": source, "index": np.arange(count)}, target)
    groups = ({"source": "s", "index": None}, "t")
    boundaries = {"s": [16, 32], "t": [8, 8]}
    dataset = bucketed_batches(arrays, {"s": source_lengths, "t": target_lengths}, boundaries,
                               batch_size=8, shuffle=False, remainder="keep", groups=groups)
    seen = []
    for inputs, labels in dataset.as_numpy_iterator():
        assert inputs["source"].shape[1] in (16, 32) and labels.shape[1] == 8
        for row, index in enumerate(inputs["index"]):
            assert source_lengths[index] <= inputs["source"].shape[1]
            np.testing.assert_array_equal(inputs["source"][row],
                                          source[index, :inputs["source"].shape[1]])
        seen.extend(inputs["index"].tolist())
    assert sorted(seen) == list(range(count))  # "keep": every example once


def test_promoted_remainders_drop_fewer_than_one_batch_per_epoch():
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 33, 101)
    ids = np.where(np.arange(32) < lengths[:, None], 3, 0)
    dataset = bucketed_batches(ids, lengths, [8, 16, 24, 32], batch_size=8,
                               remainder="promote")
    rows = sum(batch.shape[0] for batch in dataset.as_numpy_iterator())
    assert rows == 101 // 8 * 8
    with pytest.raises(ValueError, match="remainder"):
        bucketed_batches(ids, lengths, [32], batch_size=8, remainder="pad")


def test_generator_make_dataset_buckets_by_default_and_traces_once_per_bucket():
    texts, _ = _long_tailed_texts()
    model = Generator.from_preset("tiny", sequence_length=80, num_layers=1)
    # 48 batches: 3 buckets of at least MIN_BATCHES_PER_BUCKET (16) batches.
    dataset = model.make_dataset(texts, batch_size=2, seed=0)
    widths = {batch[0].shape[1] for batch in dataset}
    batches = int(dataset.cardinality())
    assert 1 < len(widths) <= 4 and min(widths) < 80 and batches > len(widths)
    # 12 batches: too few to repay a second compiled shape; one, cut to the longest row.
    small = model.make_dataset(texts, batch_size=8, seed=0)
    longest = max(len(text) for text in texts) + 1  # bytes and [BOS]
    assert {batch[0].shape[1] for batch in small} == {min(80, -(-longest // 8) * 8)}
    plain = model.make_dataset(texts, batch_size=8, bucketing=False)
    assert {batch[0].shape[1] for batch in plain} == {80}
    # Every real target survives the cut: the same tokens are trained on.
    assert sum(float(w.numpy().sum()) for _, _, w in dataset) == pytest.approx(
        sum(float(w.numpy().sum()) for _, _, w in plain), rel=0.15)

    model.compile(jit_compile=False)
    traces = []
    step = model.train_step

    def counted(data):
        traces.append(data[0].shape)
        return step(data)

    model.train_step = counted
    model.fit(dataset, epochs=2, verbose=0)
    # A new trace per width at most (Keras may generalize them into one).
    assert len(traces) <= len(widths) < 2 * batches


def test_translator_bucketed_evaluation_metrics_equal_unbucketed_ones():
    sources, targets = _long_tailed_texts(64)
    model = Translator.from_preset("tiny", source_length=80, target_length=32,
                                   num_encoder_layers=1, num_decoder_layers=1)
    model.compile(jit_compile=False)
    scores = {}
    for bucketing in (True, False):
        dataset = model.make_dataset(sources, targets, batch_size=2, shuffle=False,
                                     bucketing=bucketing)
        scores[bucketing] = model.evaluate(dataset, verbose=0, return_dict=True)
    assert scores[True]["masked_accuracy"] == pytest.approx(scores[False]["masked_accuracy"],
                                                            abs=1e-6)
    bucketed = model.make_dataset(sources, targets, batch_size=2, shuffle=False)
    shapes = {(x["source_ids"].shape[1], y.shape[1]) for x, y, _ in bucketed}
    assert len(shapes) > 1 and all(s <= 80 and t <= 32 for s, t in shapes)
    with pytest.raises(ValueError, match="bucketing"):
        model.make_dataset(sources, targets, bucketing="yes")


def test_too_few_examples_for_one_training_batch_is_named():
    model = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    with pytest.raises(ValueError, match=r"`batch_size`=8 needs at least.*Received: 4 example"):
        model.make_dataset(["ab", "cd", "ef", "gh"], batch_size=8)
    # Evaluation keeps a smaller last batch: four examples are enough.
    batches = list(model.make_dataset(["ab", "cd", "ef", "gh"], batch_size=8, shuffle=False))
    assert [batch[0].shape[0] for batch in batches] == [4]
