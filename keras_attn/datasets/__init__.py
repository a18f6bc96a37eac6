"""Datasets: small built-in tasks generated on the fly."""

from keras_attn.datasets.synthetic import (
    alphabet_runs,
    number_to_words,
    number_words,
    sentiment_with_negation,
)

__all__ = ["alphabet_runs", "number_to_words", "number_words", "sentiment_with_negation"]
