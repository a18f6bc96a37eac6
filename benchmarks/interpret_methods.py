"""Time of each `keras_attn.interpret` method on one 128-token input.

Each task's `tiny` preset (2 layers of width 64 and 4 heads; the translator
2 + 2 layers) with positions for 160 tokens and random weights (speed does
not depend on them), one text of 128 tokens (the translator: 128 source and
32 target tokens). Every method runs once to trace, then the median of
`--repeats` runs is reported. Attention flow's exact max-flow is T^4 work:
through two layers it has a closed form, so the 2-layer figures are cheap;
the script also times flow through 3 layers at `--flow-tokens` tokens.

    OPENBLAS_NUM_THREADS=1 python benchmarks/interpret_methods.py [--repeats 3]
"""

import argparse
import statistics
import time

import keras

from keras_attn import interpret
from keras_attn.models import Classifier, Generator, Translator


def median_seconds(function, repeats):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def models():
    text = ("abcdefgh" * 16)[:127]  # [BOS] + 127 bytes = 128 tokens
    yield "generator", Generator.from_preset("tiny", sequence_length=160), text, None
    yield "classifier", Classifier.from_preset("tiny", num_classes=2, sequence_length=160), \
        text[:126], None  # [CLS] + 126 + [SEP] = 128
    yield "translator", Translator.from_preset(
        "tiny", source_length=160, target_length=40), text, "x" * 31


def method_timings(name, model, text, target_text, repeats):
    """`{method: median seconds}` of every method on one model and text."""
    targets = None if target_text is None else [target_text]
    (maps,) = interpret.attention_maps(model, [text], targets=targets)
    kind = "encoder" if name == "translator" else None
    data = model.dataset_from_data(_examples(name, text, target_text), batch_size=1,
                                   shuffle=False)
    methods = {
        "attention maps": lambda: interpret.attention_maps(model, [text], targets=targets),
        "rollout": lambda: interpret.attention_rollout(maps, kind=kind),
        "flow (2 layers)": lambda: interpret.attention_flow(maps, kind=kind, max_tokens=1000),
        "relevance": lambda: interpret.relevance(model, [text], targets=targets),
        "integrated gradients (50 steps)": lambda: interpret.integrated_gradients(
            model, [text], targets=targets, steps=50),
        "attention attribution (20 steps)": lambda: interpret.attention_attribution(
            model, [text], targets=targets, steps=20),
        "value norms": lambda: interpret.value_norms(model, [text], targets=targets),
        "sinks": lambda: interpret.sinks_from_maps(maps, kind=kind),
        "head importance": lambda: interpret.head_importance(model, data),
    }
    return {method: median_seconds(function, repeats) for method, function in methods.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flow-tokens", type=int, default=16)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    for name, model, text, target_text in models():
        for method, seconds in method_timings(name, model, text, target_text,
                                              args.repeats).items():
            print(f"{name:10s} {method:34s} {seconds * 1000:10.1f} ms", flush=True)
    deep = Classifier.from_preset("tiny", num_classes=2, num_layers=3, sequence_length=160)
    (maps,) = interpret.attention_maps(deep, ["a" * (args.flow_tokens - 2)])
    seconds = median_seconds(lambda: interpret.attention_flow(maps), 1)
    print(f"classifier flow through 3 layers at {args.flow_tokens} tokens: {seconds:.2f} s")


def _examples(name, text, target_text):
    from keras_attn.data.examples import ClassificationData, TextData, TranslationData

    if name == "generator":
        return TextData(texts=[text])
    if name == "classifier":
        return ClassificationData(texts=[text], labels=[0], label_names=["a", "b"])
    return TranslationData(sources=[text], targets=[target_text])


if __name__ == "__main__":
    main()
