"""Tutorial 6: looking inside -- attention maps, rollout, flow, relevance,
integrated gradients, attention attribution, value norms, attention sinks,
head importance and pruning, and the HTML viewer.

A small BERT-style classifier learns sentiment with negation ("the plot was
not dull" is positive). Then every method of `keras_attn.interpret` asks
the same question of it -- which tokens decided the answer? -- and the
answers are drawn side by side.

Run: python tutorials/06_looking_inside.py --out tutorial_output/06
"""

import os
import time

import keras
import numpy as np
from common import parse_args, save

from keras_attn.data import load_builtin
from keras_attn.interpret import (
    attention_flow,
    attention_maps,
    attention_rollout,
    attention_sinks,
    explain,
    head_importance,
    integrated_gradients,
    plot_attention_grid,
    plot_head_importance,
    plot_pruning_curve,
    plot_token_scores,
    prune_least_important,
    pruning_curve,
    relevance,
    value_norms,
    write_explanation,
)
from keras_attn.models import Classifier, Generator
from keras_attn.tokenizers import WordPieceTokenizer

args = parse_args(__doc__.splitlines()[0], "tutorial_output/06")
keras.utils.set_random_seed(0)

# --- 1. A model to look inside ------------------------------------------------
train = load_builtin("sentiment_negation", "train", num_examples=800 if args.quick else 6000)
test = load_builtin("sentiment_negation", "test", num_examples=300)
tokenizer = WordPieceTokenizer.train(train.texts[:1000], vocabulary_size=120)
model = Classifier.from_preset("tiny", tokenizer=tokenizer, num_classes=2, sequence_length=16,
                               label_names=["negative", "positive"])
model.compile(optimizer=keras.optimizers.Adam(2e-3))
model.fit(model.make_dataset(train.texts, train.labels, batch_size=64),
          epochs=2 if args.quick else 4, verbose=0)
metrics, _ = model.evaluate_data(test)
print(f"test accuracy {metrics['accuracy']:.3f}")

sentence = "the plot was not dull"
labels, probabilities = model.classify([sentence])
print(f"{sentence!r} -> {labels[0]} ({probabilities[0].max():.2f})")
timings = {}


def timed(name, function, *arguments, **options):
    start = time.perf_counter()
    result = function(*arguments, **options)
    timings[name] = time.perf_counter() - start
    return result


# --- 2. Raw attention ------------------------------------------------------------
# Every layer and head, padding removed, rows summing to one. Raw weights are
# a start, not an answer: after the first layer, a position holds a mixture
# of tokens, not the token written under it.
(maps,) = timed("attention maps", attention_maps, model, [sentence])
tokens = maps.tokens["tokens"]
save(plot_attention_grid(maps, "encoder"), args.out, "attention_grid.png")

# --- 3. Rollout and flow (Abnar & Zuidema 2020) ----------------------------------------
# Rollout multiplies the layers' head-averaged attention, with the residual
# connection mixed in as 0.5·A + 0.5·I; flow treats the layers as a graph
# with attention as capacities and asks how much can flow from the output to
# each token. Both are read at the [CLS] row, which the classifier pools.
rollout = timed("rollout", attention_rollout, maps)
flow = timed("flow", attention_flow, maps)

# --- 4. Gradients: relevance and integrated gradients -------------------------------
# Attention says where a token looked, not whether it mattered for *this*
# output. Relevance (Chefer et al. 2021) weights each attention map by its
# gradient for the chosen class; integrated gradients (Sundararajan et al.
# 2017) integrate the gradient from a baseline ([PAD] tokens) to the input,
# and its attributions add up to the change in the score ("completeness").
(relevant,) = timed("relevance", relevance, model, [sentence], target="positive")
(attributed,) = timed("integrated gradients", integrated_gradients, model, [sentence],
                      target="positive", steps=32)
print(f"integrated gradients: sum {attributed.scores['tokens'].sum():.3f} vs "
      f"f(x) - f(baseline) {attributed.explained.score - attributed.baseline_score:.3f} "
      f"(gap {attributed.relative_gap:.1%})")

figure_rows = [
    ("rollout ([CLS] row)", rollout[0]),
    ("flow ([CLS] row)", flow[0]),
    # Self-relevance starts as the identity, so [CLS] always holds at least 1
    # of its own; what the layers added is the rest.
    ("relevance", relevant.token_scores["tokens"] - np.eye(len(tokens))[0]),
    ("integrated gradients", attributed.scores["tokens"]),
]
for name, scores in figure_rows:
    ranked = sorted(zip(tokens, scores), key=lambda pair: -abs(pair[1]))
    print(f"{name:22s} top tokens: {[token for token, _ in ranked[:3]]}")
    save(plot_token_scores(tokens, scores, title=name), args.out,
         name.split(" (")[0].replace(" ", "_") + ".png")

# --- 5. Value norms (Kobayashi et al. 2020) -------------------------------------------
# A large weight on a token whose transformed value vector is tiny moves
# nothing. ‖α·f(x)‖ weighs each attention weight by what it carries.
(norms,) = timed("value norms", value_norms, model, [sentence])
save(plot_attention_grid(norms, "encoder"), args.out, "value_norms.png")

# --- 6. Attention sinks -------------------------------------------------------------
# Many trained models park attention on the first position when a head has
# nothing to do. A generator shows it best: compare the share on position 0
# with what uniform causal attention would give.
generator = Generator.from_preset("tiny", sequence_length=32)
generator.compile()
runs = load_builtin("alphabet_runs", "train", num_examples=1500)
generator.fit(generator.make_dataset(runs.texts, batch_size=64), epochs=2, verbose=0)
sinks = timed("attention sinks", attention_sinks, generator, runs.texts[:16])
print("share of attention on the first position per layer:",
      np.round(sinks.layer_share, 3).tolist(), f"(uniform baseline {sinks.baseline:.3f})")

# --- 7. Head importance and pruning (Michel et al. 2019) --------------------------------
# How much does the loss change if a head is switched off? The gradient of
# the loss with respect to a head mask answers for all heads at once.
# Removing the least important heads gives a smaller model.
importance = timed("head importance", head_importance, model, test)
save(plot_head_importance(importance.scores["encoder"]), args.out, "head_importance.png")
pruned, removed = prune_least_important(model, importance, 0.25)
print(f"pruned {sum(len(h) for layers in removed.values() for h in layers.values())} heads; "
      f"parameters {model.count_params():,} -> {pruned.count_params():,}; "
      f"{sentence!r} -> {pruned.classify([sentence])[0][0]}")
curve = timed("pruning curve", pruning_curve, model, test, shares=(0.0, 0.25, 0.5, 0.75),
              importance=importance)
save(plot_pruning_curve(curve, "accuracy"), args.out, "pruning_curve.png")

# --- 8. The HTML viewer --------------------------------------------------------------
# One self-contained file (no network): choose a layer and head, hover a token
# to see where it attends, switch between raw attention and relevance.
explanation = explain(model, sentence, "relevance", target="positive")
path = write_explanation(explanation, os.path.join(args.out, "viewer.html"))
print("open", path, "in a browser")

print("seconds per method:", {name: round(value, 3) for name, value in timings.items()})
