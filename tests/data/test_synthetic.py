import collections
import datetime
import re

import pytest

from keras_attn.data.synthetic import (
    DATE_TEMPLATES,
    alphabet_runs,
    date_to_words,
    dates,
    number_words,
    ordinal_words,
    sentiment_with_negation,
    sorted_letters,
    year_to_words,
)

# ---------------------------------------------------------------------------
# An independent reader of spelled-out dates, written from English rather
# than from the generator's tables, so a wrong word or template is caught.

_CARDINALS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_CARDINALS.update(
    {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
     "eighty": 80, "ninety": 90}
)
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17,
    "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}
_MONTH_NUMBERS = {
    month: number
    for number, month in enumerate(
        ["january", "february", "march", "april", "may", "june", "july", "august",
         "september", "october", "november", "december"], 1
    )
}


def _sum_words(words):
    """`["twenty", "first"]` -> 21, `["seven"]` -> 7 (tens + units)."""
    assert 1 <= len(words) <= 2, words
    total = sum(_ORDINALS.get(w, _CARDINALS.get(w, -1000)) for w in words)
    assert total >= 0, words
    return total


def _read_year(words):
    if words[:2] == ["two", "thousand"]:
        return 2000 + (_sum_words(words[2:]) if words[2:] else 0)
    century = {"nineteen": 1900, "twenty": 2000}[words[0]]
    rest = words[1:]
    if rest == ["hundred"]:
        return century
    if rest[0] == "oh":
        assert len(rest) == 2 and 1 <= _CARDINALS[rest[1]] <= 9
        return century + _CARDINALS[rest[1]]
    value = _sum_words(rest)
    assert 10 <= value <= 99, words
    return century + value


def read_spelled_date(text):
    """The `datetime.date` an English date in words stands for."""
    words = text.replace(",", " ,").split()
    if words[0] in _MONTH_NUMBERS:  # "march third ...", "march the third, ...", "march three, ..."
        month, rest = words[0], words[1:]
        if "," in rest:
            cut = rest.index(",")
            day_words, year_words = rest[:cut], rest[cut + 1 :]
        else:
            cut = next(i for i, w in enumerate(rest) if w in _ORDINALS) + 1
            day_words, year_words = rest[:cut], rest[cut:]
    else:  # "[the] third of march ..."
        cut = words.index("of")
        day_words, month, year_words = words[:cut], words[cut + 1], words[cut + 2 :]
    if day_words[0] == "the":
        day_words = day_words[1:]
    return datetime.date(_read_year(year_words), _MONTH_NUMBERS[month], _sum_words(day_words))


# ---------------------------------------------------------------------------


def test_existing_generators_keep_their_behaviour():
    sources, targets = number_words(50, seed=3)
    assert (sources, targets) == number_words(50, seed=3)
    assert all(str(int(t)) == t and 0 <= int(t) <= 999 for t in targets)
    texts, labels = sentiment_with_negation(40, seed=1)
    assert len(texts) == 40 and set(labels.tolist()) <= {0, 1}
    runs = alphabet_runs(30, seed=2)
    assert all(5 <= len(r) <= 12 and r in "abcdefghijklmnopqrstuvwxyz" for r in runs)


def test_dates_are_valid_iso_and_the_words_read_back():
    sources, targets = dates(2000, seed=0)
    assert len(sources) == len(targets) == 2000
    for source, target in zip(sources, targets):
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", target), target
        date = datetime.date.fromisoformat(target)  # raises on 1999-02-30
        assert 1900 <= date.year <= 2099
        assert read_spelled_date(source) == date, (source, target)


def test_dates_cover_templates_years_and_both_year_readings():
    sources, targets = dates(3000, seed=5)
    years = [int(t[:4]) for t in targets]
    assert min(years) < 1910 and max(years) > 2090
    assert {t[5:7] for t in targets} == {f"{m:02d}" for m in range(1, 13)}
    assert any(t.endswith("-31") for t in targets)
    shapes = collections.Counter(
        "the_of" if s.startswith("the ") else
        "of" if " of " in s else
        "the_comma" if " the " in s else
        "comma" if "," in s else "month_ordinal"
        for s in sources
    )
    assert len(shapes) == len(DATE_TEMPLATES) and min(shapes.values()) > 400
    recent = [s for s, y in zip(sources, years) if y >= 2010]
    assert any("two thousand" in s for s in recent)
    assert any("two thousand" not in s for s in recent)


def test_dates_are_deterministic_per_seed():
    assert dates(100, seed=1) == dates(100, seed=1)
    assert dates(100, seed=1) != dates(100, seed=2)
    assert dates(0) == ([], [])


def test_year_and_ordinal_words():
    assert year_to_words(1900) == "nineteen hundred"
    assert year_to_words(1905) == "nineteen oh five"
    assert year_to_words(1999, "thousands") == "nineteen ninety nine"
    assert year_to_words(2000) == "two thousand"
    assert year_to_words(2007) == "two thousand seven"
    assert year_to_words(2010) == "twenty ten"
    assert year_to_words(2099, "thousands") == "two thousand ninety nine"
    assert [ordinal_words(d) for d in (1, 2, 3, 12, 20, 22, 30, 31)] == [
        "first", "second", "third", "twelfth", "twentieth", "twenty second",
        "thirtieth", "thirty first",
    ]
    assert date_to_words(datetime.date(1999, 3, 3)) == "the third of march nineteen ninety nine"
    assert date_to_words(datetime.date(1999, 3, 3), 4) == "march three, nineteen ninety nine"
    for bad in (lambda: year_to_words(1899), lambda: ordinal_words(32),
                lambda: year_to_words(2001, "roman"), lambda: dates(-1)):
        with pytest.raises(ValueError):
            bad()


def test_sorted_letters_sort_the_prompt():
    texts = sorted_letters(500, min_length=2, max_length=6, seed=0)
    lengths = set()
    for text in texts:
        prompt, answer = text.split("=")
        assert re.fullmatch(r"[a-z]+", prompt)
        assert answer == "".join(sorted(prompt))
        lengths.add(len(prompt))
    assert lengths == {2, 3, 4, 5, 6}
    assert any(len(set(t.split("=")[0])) < len(t.split("=")[0]) for t in texts)  # repeats kept
    assert any(t.split("=")[0] != t.split("=")[1] for t in texts)  # not a copy task


def test_sorted_letters_determinism_and_arguments():
    assert sorted_letters(50, seed=3) == sorted_letters(50, seed=3)
    assert sorted_letters(50, seed=3) != sorted_letters(50, seed=4)
    with pytest.raises(ValueError, match="max_length"):
        sorted_letters(5, min_length=6, max_length=3)
    with pytest.raises(ValueError, match="min_length"):
        sorted_letters(5, min_length=0)
