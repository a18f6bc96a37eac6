"""Small tasks generated on the fly (no download, deterministic per seed).

They are sized so that a tiny preset learns them on 2 CPU cores in about a
minute, which makes them the test bed of the models and the quickstart.
"""

import datetime

import numpy as np

from keras_attn.utils.arguments import check_non_negative_int, check_positive_int

_ONES = "zero one two three four five six seven eight nine".split()
_TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(number):
    """English words for an integer in [0, 999], e.g. 342 -> "three hundred forty two".

    Example:
    >>> number_to_words(342), number_to_words(0)
    ('three hundred forty two', 'zero')
    """
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

    Example:
    >>> sources, targets = number_words(2)
    >>> sources, targets
    (['eight hundred fifty', 'six hundred thirty six'], ['850', '636'])
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

    Example:
    >>> texts, labels = sentiment_with_negation(2)
    >>> texts, labels.tolist()
    (['the movie was not awful', 'the acting was very bad'], [1, 0])
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


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def alphabet_runs(num_examples, min_length=5, max_length=12, seed=0):
    """Generation: runs of consecutive letters, e.g. `"defghij"`.

    A model that learned the task continues any prefix with the next letters.

    Example:
    >>> alphabet_runs(2)
    ['klmnopqrstu', 'efghijklm']
    """
    rng = np.random.default_rng(seed)
    letters = _LETTERS
    texts = []
    for _ in range(num_examples):
        length = int(rng.integers(min_length, max_length + 1))
        start = int(rng.integers(0, len(letters) - length + 1))
        texts.append(letters[start : start + length])
    return texts


_MONTHS = (
    "january february march april may june july august september october november december"
).split()
_ORDINAL_ONES = "_ first second third fourth fifth sixth seventh eighth ninth".split()
_ORDINAL_TEENS = (
    "tenth eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth "
    "eighteenth nineteenth"
).split()

# Every template spells the whole date out in words; the target is always ISO.
DATE_TEMPLATES = (
    "the {ordinal} of {month} {year}",  # the third of march nineteen ninety nine
    "{ordinal} of {month} {year}",  # third of march nineteen ninety nine
    "{month} {ordinal} {year}",  # march third nineteen ninety nine
    "{month} the {ordinal}, {year}",  # march the third, nineteen ninety nine
    "{month} {cardinal}, {year}",  # march three, nineteen ninety nine
)
_FIRST_DATE = datetime.date(1900, 1, 1).toordinal()
_LAST_DATE = datetime.date(2099, 12, 31).toordinal()


def ordinal_words(number):
    """English ordinal for a day of the month, e.g. 21 -> "twenty first".

    Example:
    >>> ordinal_words(21), ordinal_words(3)
    ('twenty first', 'third')
    """
    if not 1 <= number <= 31:
        raise ValueError(f"`number` must be in [1, 31]. Received: number={number}")
    if number < 10:
        return _ORDINAL_ONES[number]
    if number < 20:
        return _ORDINAL_TEENS[number - 10]
    tens, ones = divmod(number, 10)
    if ones == 0:
        return _TENS[tens][:-1] + "ieth"  # twenty -> twentieth, thirty -> thirtieth
    return f"{_TENS[tens]} {_ORDINAL_ONES[ones]}"


def year_to_words(year, style="pairs"):
    """English words for a year in [1900, 2099].

    `style="pairs"` reads the year as two two-digit numbers ("nineteen ninety
    nine", "nineteen oh five", "nineteen hundred", "twenty twelve");
    `style="thousands"` as a number ("two thousand five"). Years 2000-2009
    are always read in thousands and 1900-1999 always in pairs, as people say
    them.

    Example:
    >>> year_to_words(1984), year_to_words(2005)
    ('nineteen eighty four', 'two thousand five')
    """
    if not 1900 <= year <= 2099:
        raise ValueError(f"`year` must be in [1900, 2099]. Received: year={year}")
    if style not in ("pairs", "thousands"):
        raise ValueError(f"`style` must be 'pairs' or 'thousands'. Received: style={style!r}")
    century, rest = divmod(year, 100)
    if century == 20 and (style == "thousands" or rest < 10):
        return "two thousand" + (f" {number_to_words(rest)}" if rest else "")
    if rest == 0:
        tail = "hundred"
    elif rest < 10:
        tail = f"oh {_ONES[rest]}"
    else:
        tail = number_to_words(rest)
    return f"{_TEENS[century - 10] if century == 19 else 'twenty'} {tail}"


def date_to_words(date, template=0, year_style="pairs"):
    """A `datetime.date` spelled out with one of `DATE_TEMPLATES` (an index).

    Example: `date_to_words(datetime.date(1999, 3, 3))` ->
    `"the third of march nineteen ninety nine"`.

    Example:
    >>> import datetime
    >>> date_to_words(datetime.date(2024, 5, 3), template=2)
    'may third twenty twenty four'
    """
    return DATE_TEMPLATES[template].format(
        ordinal=ordinal_words(date.day),
        cardinal=number_to_words(date.day),
        month=_MONTHS[date.month - 1],
        year=year_to_words(date.year, year_style),
    )


def dates(num_examples, seed=0):
    """Translation pairs: dates spelled out in words to ISO 8601.

    Dates are uniform over 1900-01-01 .. 2099-12-31, each written with a
    random template of `DATE_TEMPLATES` and, for 2010-2099, a random year
    reading ("twenty twelve" or "two thousand twelve"). The model has to
    reorder (day / month / year), map month names to numbers and turn
    cardinal and ordinal words into zero-padded digits.

    Returns `(sources, targets)`, e.g.
    `"march the third, nineteen ninety nine"` -> `"1999-03-03"`. Sources are
    at most 57 characters long, targets always 10.

    Example:
    >>> sources, targets = dates(2, seed=1)
    >>> sources[0], targets[0]
    ('august the twenty first, nineteen ninety four', '1994-08-21')
    """
    num_examples = check_non_negative_int("num_examples", num_examples)
    rng = np.random.default_rng(seed)
    days = rng.integers(_FIRST_DATE, _LAST_DATE + 1, num_examples)
    templates = rng.integers(0, len(DATE_TEMPLATES), num_examples)
    year_styles = rng.integers(0, 2, num_examples)
    sources, targets = [], []
    for day, template, style in zip(days, templates, year_styles):
        date = datetime.date.fromordinal(int(day))
        sources.append(date_to_words(date, int(template), ("pairs", "thousands")[int(style)]))
        targets.append(date.isoformat())
    return sources, targets


def sorted_letters(num_examples, min_length=3, max_length=8, seed=0):
    """Generation: letters, `=`, then the same letters sorted, e.g.
    `"qdmxd=ddmqx"`.

    Letters are drawn with replacement from a-z, so repeats must be kept.
    A model that learned the task sorts any prompt that ends with `=`: it
    cannot copy (the order changes) nor memorize (26**8 prompts), it has to
    count and order what it attends to.

    Example:
    >>> sorted_letters(2)
    ['qnhibbae=abbehinq', 'qxnpzsq=npqqsxz']
    """
    num_examples = check_non_negative_int("num_examples", num_examples)
    min_length = check_positive_int("min_length", min_length)
    max_length = check_positive_int("max_length", max_length)
    if max_length < min_length:
        raise ValueError(
            "`max_length` must be >= `min_length`. Received: "
            f"min_length={min_length}, max_length={max_length}"
        )
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(num_examples):
        length = int(rng.integers(min_length, max_length + 1))
        letters = "".join(rng.choice(list(_LETTERS), length))
        texts.append(f"{letters}={''.join(sorted(letters))}")
    return texts
