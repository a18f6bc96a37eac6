"""Datasets: small built-in tasks generated on the fly (no download)."""

from keras_attn.datasets.synthetic import (
    DATE_TEMPLATES,
    alphabet_runs,
    date_to_words,
    dates,
    number_to_words,
    number_words,
    ordinal_words,
    sentiment_with_negation,
    sorted_letters,
    year_to_words,
)

__all__ = [
    "DATE_TEMPLATES",
    "alphabet_runs",
    "date_to_words",
    "dates",
    "number_to_words",
    "number_words",
    "ordinal_words",
    "sentiment_with_negation",
    "sorted_letters",
    "year_to_words",
]
