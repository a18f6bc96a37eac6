import pytest

from keras_attn.data import (
    BUILTIN_DATASETS,
    SPLITS,
    ClassificationData,
    TextData,
    TranslationData,
    load_builtin,
    split_seed,
)

TYPES = {"translation": TranslationData, "classification": ClassificationData,
         "generation": TextData}


def _examples(data):
    if isinstance(data, TranslationData):
        return list(zip(data.sources, data.targets))
    if isinstance(data, ClassificationData):
        return list(zip(data.texts, data.labels))
    return list(data.texts)


def test_catalog_lists_the_five_tasks():
    assert {name: d.task for name, d in BUILTIN_DATASETS.items()} == {
        "number_words": "translation",
        "dates": "translation",
        "sentiment_negation": "classification",
        "alphabet_runs": "generation",
        "sorted_letters": "generation",
    }
    for dataset in BUILTIN_DATASETS.values():
        assert dataset.description and set(dataset.sizes) == set(SPLITS)


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_type_size_and_plain_python_values(name):
    data = load_builtin(name, "train", num_examples=64, seed=0)
    assert isinstance(data, TYPES[BUILTIN_DATASETS[name].task])
    assert len(data) == 64 and data.skipped == 0
    for example in _examples(data):
        values = example if isinstance(example, tuple) else (example,)
        assert isinstance(values[0], str) and values[0]
        assert all(type(v) in (str, int) for v in values)


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_deterministic_per_seed_and_splits_differ(name):
    train = _examples(load_builtin(name, "train", 200, seed=7))
    assert train == _examples(load_builtin(name, "train", 200, seed=7))
    assert train != _examples(load_builtin(name, "train", 200, seed=8))
    validation = _examples(load_builtin(name, "validation", 200, seed=7))
    test = _examples(load_builtin(name, "test", 200, seed=7))
    assert len({tuple(train), tuple(validation), tuple(test)}) == 3


def test_large_tasks_rarely_repeat_across_splits():
    train = set(load_builtin("dates", "train", 2000).sources)
    test = load_builtin("dates", "test", 500).sources
    assert sum(s in train for s in test) < 10


def test_default_sizes_and_labels():
    assert len(load_builtin("alphabet_runs", "validation")) == (
        BUILTIN_DATASETS["alphabet_runs"].sizes["validation"]
    )
    data = load_builtin("sentiment_negation", "test", 300)
    assert data.label_names == ["negative", "positive"]
    assert set(data.labels) == {0, 1} and all(type(label) is int for label in data.labels)
    positive_words = {"good", "great", "excellent", "wonderful", "superb", "fun"}
    for text, label in zip(data.texts, data.labels):
        words = text.split()
        assert label == int((words[-1] in positive_words) != ("not" in words)), text


def test_split_seeds_are_distinct_and_stable():
    seeds = [split_seed(0, split) for split in SPLITS] + [split_seed(1, "train")]
    assert len(set(seeds)) == 4 and split_seed(0, "train") == seeds[0]


@pytest.mark.parametrize(
    "kwargs, argument",
    [({"name": "imagenet"}, "name"), ({"name": "dates", "split": "dev"}, "split"),
     ({"name": "dates", "num_examples": 0}, "num_examples"),
     ({"name": "dates", "seed": -1}, "seed")],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`.*Received"):
        load_builtin(**kwargs)
