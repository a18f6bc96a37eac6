"""Training utilities: learning-rate schedule, masked loss and metrics, BLEU, callbacks."""

from keras_attn.training.callbacks import (
    ResumableModelCheckpoint,
    TimeBudget,
    training_callbacks,
)
from keras_attn.training.losses import (
    MaskedSparseCategoricalCrossentropy,
    token_cross_entropy,
    token_weights,
)
from keras_attn.training.metrics import MaskedAccuracy, Perplexity, corpus_bleu
from keras_attn.training.schedules import InverseSquareRootSchedule

__all__ = [
    "InverseSquareRootSchedule",
    "MaskedAccuracy",
    "MaskedSparseCategoricalCrossentropy",
    "Perplexity",
    "ResumableModelCheckpoint",
    "TimeBudget",
    "corpus_bleu",
    "token_cross_entropy",
    "token_weights",
    "training_callbacks",
]
