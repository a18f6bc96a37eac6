"""Built-in datasets: the small tasks of `keras_attn.data.synthetic`, generated on
the fly (no download) with train / validation / test splits.

Each split draws from its own seed, derived from `(seed, split)`, so the
splits are different samples of the same distribution and the same call
always returns the same examples. The splits are independent draws, not a
partition: tasks with few distinct examples (`number_words` has 1,000,
`alphabet_runs` about 150) repeat texts across splits; for `dates` and
`sorted_letters` overlaps are rare.

Example:

>>> from keras_attn.data import BUILTIN_DATASETS, load_builtin
>>> train = load_builtin("dates", "train", num_examples=5000)
>>> test = load_builtin("dates", "test")
>>> len(train), len(test) == BUILTIN_DATASETS["dates"].sizes["test"]
(5000, True)
>>> train.sources[0], train.targets[0]
('october two, twenty forty two', '2042-10-02')
"""

import dataclasses

import numpy as np

from keras_attn.data import synthetic
from keras_attn.data.examples import ClassificationData, TextData, TranslationData
from keras_attn.utils.arguments import check_choice, check_non_negative_int, check_positive_int

SPLITS = ("train", "validation", "test")
TASKS = ("translation", "classification", "generation")


@dataclasses.dataclass(frozen=True)
class BuiltinDataset:
    """One built-in dataset.

    Attributes:
        name: its name in `BUILTIN_DATASETS`.
        task: "translation", "classification" or "generation".
        description: one line, with an example.
        sizes: default number of examples per split.
        make: `make(num_examples, seed)` returns the examples.

    Example:
    >>> dataset = BUILTIN_DATASETS["number_words"]
    >>> dataset.task, dataset.sizes["test"]
    ('translation', 500)
    >>> dataset.make(2, seed=0).targets
    ['850', '636']
    """

    name: str
    task: str
    description: str
    sizes: dict
    make: object = dataclasses.field(repr=False)


def _number_words(num_examples, seed):
    return TranslationData(*synthetic.number_words(num_examples, seed=seed))


def _dates(num_examples, seed):
    return TranslationData(*synthetic.dates(num_examples, seed=seed))


def _sentiment_negation(num_examples, seed):
    texts, labels = synthetic.sentiment_with_negation(num_examples, seed=seed)
    return ClassificationData(texts, [int(label) for label in labels], ["negative", "positive"])


def _alphabet_runs(num_examples, seed):
    return TextData(synthetic.alphabet_runs(num_examples, seed=seed))


def _sorted_letters(num_examples, seed):
    return TextData(synthetic.sorted_letters(num_examples, seed=seed))


def _sizes(train, validation, test):
    return {"train": train, "validation": validation, "test": test}


BUILTIN_DATASETS = {
    dataset.name: dataset
    for dataset in (
        BuiltinDataset(
            "number_words",
            "translation",
            "spelled-out numbers 0-999 to digits: 'three hundred forty two' -> '342'",
            _sizes(4000, 500, 500),
            _number_words,
        ),
        BuiltinDataset(
            "dates",
            "translation",
            "dates 1900-2099 in words to ISO 8601: 'march the third, nineteen ninety nine' "
            "-> '1999-03-03'",
            _sizes(20000, 1000, 1000),
            _dates,
        ),
        BuiltinDataset(
            "sentiment_negation",
            "classification",
            "sentiment flipped by 'not': 'the plot was not really dull' -> positive",
            _sizes(3000, 1000, 1000),
            _sentiment_negation,
        ),
        BuiltinDataset(
            "alphabet_runs",
            "generation",
            "runs of consecutive letters to continue: 'defghij'",
            _sizes(3000, 500, 500),
            _alphabet_runs,
        ),
        BuiltinDataset(
            "sorted_letters",
            "generation",
            "letters, '=', the same letters sorted; prompt with 'qdmxd=': 'qdmxd=ddmqx'",
            _sizes(20000, 1000, 1000),
            _sorted_letters,
        ),
    )
}


def split_seed(seed, split):
    """The seed a split draws from: derived from `(seed, split)`, so splits
    of one seed differ and every `(seed, split)` is reproducible.

    Example:
    >>> split_seed(0, "train") == split_seed(0, "train") != split_seed(0, "test")
    True
    """
    seed = check_non_negative_int("seed", seed)
    check_choice("split", split, SPLITS)
    sequence = np.random.SeedSequence([seed, SPLITS.index(split)])
    return int(sequence.generate_state(1)[0])


def load_builtin(name, split="train", num_examples=None, seed=0):
    """Generates a built-in dataset's split.

    Args:
        name: a key of `BUILTIN_DATASETS`.
        split: "train", "validation" or "test".
        num_examples: examples to generate (default: the dataset's size for
            that split, `BUILTIN_DATASETS[name].sizes[split]`).
        seed: non-negative int; the same `(name, split, num_examples, seed)`
            always gives the same examples.

    Returns:
        `TranslationData`, `ClassificationData` or `TextData`, by the
        dataset's task.

    Example:
    >>> data = load_builtin("number_words", "test", num_examples=2)
    >>> data.sources, data.targets
    (['nine hundred four', 'six hundred sixty'], ['904', '660'])
    """
    check_choice("name", name, tuple(BUILTIN_DATASETS))
    dataset = BUILTIN_DATASETS[name]
    derived = split_seed(seed, split)
    if num_examples is None:
        num_examples = dataset.sizes[split]
    num_examples = check_positive_int("num_examples", num_examples)
    return dataset.make(num_examples, derived)
