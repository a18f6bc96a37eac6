"""Small tasks generated on the fly (no download, deterministic per seed).

They are sized so that a tiny preset learns them on 2 CPU cores in about a
minute, which makes them the test bed of the models and the quickstart.
"""

import numpy as np

_ONES = "zero one two three four five six seven eight nine".split()
_TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(number):
    """English words for an integer in [0, 999], e.g. 342 -> "three hundred forty two"."""
    if not 0 <= number <= 999:
        raise ValueError(f"`number` must be in [0, 999]. Received: number={number}")
    hundreds, rest = divmod(number, 100)
    words = [_ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words += [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    elif rest >= 10:
        words.append(_TEENS[rest - 10])
    elif rest or not words:
        words.append(_ONES[rest])
    return " ".join(words)


def number_words(num_examples, seed=0):
    """Translation pairs: spelled-out numbers to digits.

    Returns `(sources, targets)`, e.g. `"three hundred forty two"` -> `"342"`.
    """
    numbers = np.random.default_rng(seed).integers(0, 1000, num_examples)
    return [number_to_words(int(n)) for n in numbers], [str(int(n)) for n in numbers]


_SUBJECTS = ["the movie", "the film", "the plot", "the acting", "this show", "the ending"]
_POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "fun"]
_NEGATIVE = ["bad", "awful", "terrible", "boring", "dull", "poor"]
_INTENSIFIERS = ["", "really ", "very ", "quite "]


def sentiment_with_negation(num_examples, seed=0):
    """Classification: `"the plot was not really dull"` -> 1 (positive).

    The label is the adjective's polarity, flipped by "not": a bag of words
    cannot tell "good" from "not good", the model has to relate the two.
    Returns `(texts, labels)` with labels 0 (negative) and 1 (positive).
    """
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(num_examples):
        positive = rng.random() < 0.5
        negated = rng.random() < 0.5
        adjective = rng.choice(_POSITIVE if positive else _NEGATIVE)
        text = (
            f"{rng.choice(_SUBJECTS)} was {'not ' if negated else ''}"
            f"{rng.choice(_INTENSIFIERS)}{adjective}"
        )
        texts.append(text)
        labels.append(int(positive != negated))
    return texts, np.array(labels, "int32")


def alphabet_runs(num_examples, min_length=5, max_length=12, seed=0):
    """Generation: runs of consecutive letters, e.g. `"defghij"`.

    A model that learned the task continues any prefix with the next letters.
    """
    rng = np.random.default_rng(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    texts = []
    for _ in range(num_examples):
        length = int(rng.integers(min_length, max_length + 1))
        start = int(rng.integers(0, len(letters) - length + 1))
        texts.append(letters[start : start + length])
    return texts
