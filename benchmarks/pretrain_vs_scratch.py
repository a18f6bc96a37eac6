"""Does masked-LM pretraining help a small classifier? Same architecture, same
fine-tuning budget, with and without pretraining on unlabeled text.

    python benchmarks/pretrain_vs_scratch.py [--labeled 96] [--seeds 0 1 2]   # after pip install .

Unlabeled text: 4,000 built-in sentiment sentences (labels thrown away).
Labeled: a few built-in sentences; test: 1,000 others. Both classifiers are the
tiny preset with one WordPiece tokenizer trained on the unlabeled text; the
pretrained one starts from a MaskedLanguageModel trained on that text
(`Classifier.from_masked_lm`), the other from random weights. Both then train
for the same number of epochs on the labeled set.
"""

import argparse
import json
import time

import keras
import numpy as np

from keras_attn.data import sentiment_with_negation
from keras_attn.models import Classifier, MaskedLanguageModel
from keras_attn.tokenizers import WordPieceTokenizer
from keras_attn.training import MaskedSparseCategoricalCrossentropy


def fine_tune(classifier, texts, labels, epochs):
    classifier.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    classifier.fit(classifier.make_dataset(texts, labels, batch_size=16), epochs=epochs,
                   verbose=0, shuffle=False)
    return classifier


def accuracy(classifier, texts, labels):
    predicted, _ = classifier.classify(texts)
    return float(np.mean(np.array(predicted) == np.asarray(labels)))


def run(seed, labeled, pretrain_epochs, fine_tune_epochs):
    unlabeled, _ = sentiment_with_negation(4000, seed=100 + seed)
    texts, labels = sentiment_with_negation(labeled, seed=200 + seed)
    test_texts, test_labels = sentiment_with_negation(1000, seed=300 + seed)
    tokenizer = WordPieceTokenizer.train(unlabeled, vocabulary_size=100)
    shape = dict(tokenizer=tokenizer, sequence_length=16)

    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    mlm = MaskedLanguageModel.from_preset("tiny", **shape)
    mlm.compile(optimizer=keras.optimizers.Adam(2e-3),
                loss=MaskedSparseCategoricalCrossentropy(), jit_compile=True)
    history = mlm.fit(mlm.make_dataset(unlabeled, batch_size=64, num_maskings=2, seed=seed),
                      epochs=pretrain_epochs, verbose=0, shuffle=False)
    pretrain_seconds = time.perf_counter() - started

    keras.utils.set_random_seed(seed)
    pretrained = fine_tune(Classifier.from_masked_lm(mlm, num_classes=2), texts, labels,
                           fine_tune_epochs)
    keras.utils.set_random_seed(seed)
    scratch = fine_tune(Classifier.from_preset("tiny", num_classes=2, **shape), texts, labels,
                        fine_tune_epochs)
    return {
        "seed": seed,
        "mlm_loss": [round(history.history["loss"][0], 3), round(history.history["loss"][-1], 3)],
        "pretrain_seconds": round(pretrain_seconds, 1),
        "pretrained_accuracy": accuracy(pretrained, test_texts, test_labels),
        "scratch_accuracy": accuracy(scratch, test_texts, test_labels),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labeled", type=int, default=96, help="labeled training sentences")
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--fine-tune-epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = [run(s, args.labeled, args.pretrain_epochs, args.fine_tune_epochs) for s in args.seeds]
    for row in rows:
        print(json.dumps(row))
    for key in ("pretrained_accuracy", "scratch_accuracy"):
        values = [row[key] for row in rows]
        per_seed = ", ".join(f"{v:.3f}" for v in values)
        print(f"{key}: mean {np.mean(values):.3f} (per seed {per_seed})")


if __name__ == "__main__":
    main()
