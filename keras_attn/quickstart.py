"""The quickstart: train the three tiny ready-made models on built-in data
generated on the fly (no download), report what they reached and show a few
outputs.

1. `Translator` "tiny": spelled-out numbers to digits
   ("three hundred forty two" -> "342"), byte-level; exact match, greedy and
   beam search.
2. `Classifier` "tiny": sentiment with negation ("the plot was not dull" is
   positive), with a WordPiece tokenizer trained on the training texts;
   accuracy.
3. `Generator` "tiny": runs of consecutive letters; how often it continues
   a 3-letter prompt with the right next 4 letters.
"""

import os
import time

import keras
import numpy as np

from keras_attn.data import alphabet_runs, number_words, sentiment_with_negation
from keras_attn.models import Classifier, Generator, Translator
from keras_attn.tokenizers import WordPieceTokenizer

LETTERS = "abcdefghijklmnopqrstuvwxyz"


# The datasets shuffle themselves; `fit(shuffle=False)` only tells Keras so.


def _token_model(model, learning_rate=3e-3):
    # The task's own loss and metrics (padding ignored), compiled with XLA.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def train_translator(num_examples, epochs, seed=0):
    """Tiny translator on `number_words`; returns `(model, metrics)`."""
    sources, targets = number_words(num_examples, seed=seed)
    model = _token_model(Translator.from_preset("tiny", source_length=32, target_length=8))
    history = model.fit(model.make_dataset(sources, targets, batch_size=64, seed=seed),
                        epochs=epochs, verbose=0, shuffle=False)
    test_sources, test_targets = number_words(500, seed=seed + 1)
    greedy = model.translate(test_sources)
    beam = model.translate(test_sources, beam_width=4)
    metrics = {
        "loss_first_epoch": history.history["loss"][0],
        "loss_last_epoch": history.history["loss"][-1],
        "exact_match_greedy": float(np.mean([o == t for o, t in zip(greedy, test_targets)])),
        "exact_match_beam4": float(np.mean([o == t for o, t in zip(beam, test_targets)])),
        "samples": [f"{s!r} -> {o!r}" for s, o in zip(test_sources[:3], beam[:3])],
    }
    return model, metrics


def train_classifier(num_examples, epochs, seed=0):
    """Tiny classifier on `sentiment_with_negation`; returns `(model, metrics)`."""
    texts, labels = sentiment_with_negation(num_examples, seed=seed)
    tokenizer = WordPieceTokenizer.train(texts[:500], vocabulary_size=100)
    model = Classifier.from_preset("tiny", tokenizer=tokenizer, num_classes=2,
                                   sequence_length=16, label_names=["negative", "positive"])
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    history = model.fit(model.make_dataset(texts, labels, batch_size=64, seed=seed),
                        epochs=epochs, verbose=0, shuffle=False)
    test_texts, test_labels = sentiment_with_negation(1000, seed=seed + 1)
    predicted, probabilities = model.classify(test_texts)
    names = np.array(model.label_names)
    metrics = {
        "loss_first_epoch": history.history["loss"][0],
        "loss_last_epoch": history.history["loss"][-1],
        "accuracy": float(np.mean(np.array(predicted) == names[test_labels])),
        "samples": [
            f"{t!r} -> {p} ({probabilities[i].max():.2f})"
            for i, (t, p) in enumerate(zip(test_texts[:3], predicted[:3]))
        ],
    }
    return model, metrics


def train_generator(num_examples, epochs, seed=0):
    """Tiny generator on `alphabet_runs`; returns `(model, metrics)`."""
    model = _token_model(Generator.from_preset("tiny", sequence_length=16))
    history = model.fit(model.make_dataset(alphabet_runs(num_examples, seed=seed),
                                           batch_size=64, seed=seed),
                        epochs=epochs, verbose=0, shuffle=False)
    prompts = [run[:3] for run in alphabet_runs(500, seed=seed + 1)]
    outputs = model.generate(prompts, max_new_tokens=4, stop_token_ids=None)
    expected = [LETTERS[LETTERS.index(p[-1]) + 1 :][:4] for p in prompts]
    metrics = {
        "loss_first_epoch": history.history["loss"][0],
        "loss_last_epoch": history.history["loss"][-1],
        "continuation_accuracy": float(np.mean([o == e for o, e in zip(outputs, expected)])),
        "samples": [
            f"{p!r} -> {o!r}" for p, o in zip(prompts[:3], outputs[:3])
        ] + [f"'m' (top_p=0.9, seed=1) -> {model.generate('m', 6, top_p=0.9, seed=1)!r}"],
    }
    return model, metrics


def run_quickstart(fast=False, seed=0, output_dir=None, log=print):
    """Trains the three tiny models and returns their metrics.

    Args:
        fast: less data and fewer epochs (for tests and CI).
        seed: seed for data and weights.
        output_dir: if given, each model is saved there as a preset directory
            (`translator/`, `classifier/`, `generator/`).
        log: where progress lines go.
    """
    keras.utils.set_random_seed(seed)
    plan = {
        "translator": (train_translator, (3000, 4) if fast else (4000, 6), "exact_match_beam4"),
        "classifier": (train_classifier, (3000, 3) if fast else (3000, 4), "accuracy"),
        "generator": (train_generator, (1500, 3) if fast else (3000, 4), "continuation_accuracy"),
    }
    results = {}
    for step, (name, (train, (num_examples, epochs), headline)) in enumerate(plan.items(), 1):
        log(f"[{step}/3] {name} (tiny): {num_examples} examples, {epochs} epochs ...")
        started = time.perf_counter()
        model, metrics = train(num_examples, epochs, seed=seed)
        metrics["seconds"] = time.perf_counter() - started
        metrics["parameters"] = model.count_params()
        log(f"      {headline} {metrics[headline]:.3f}, loss {metrics['loss_first_epoch']:.3f}"
            f" -> {metrics['loss_last_epoch']:.3f}, {metrics['parameters']:,} parameters, "
            f"{metrics['seconds']:.0f}s")
        for sample in metrics["samples"]:
            log(f"      {sample}")
        if output_dir:
            path = os.path.join(output_dir, name)
            model.save_to_preset(path, overwrite=True)
            metrics["saved_to"] = path
            log(f"      saved to {path}")
        results[name] = metrics
    return results
