"""Tutorial 4: a classifier -- masked-language-model pretraining, then
fine-tuning: all weights, a frozen encoder, or LoRA adapters.

BERT's recipe in miniature. A `MaskedLanguageModel` first learns the
language of unlabelled sentences by filling in hidden tokens; a `Classifier`
then starts from its encoder and learns sentiment from a few labelled
examples. We compare starting from scratch with starting from the
pretrained encoder, and three ways of fine-tuning it.

Run: python tutorials/04_classifier.py --out tutorial_output/04
"""

import keras
import numpy as np
from common import parse_args, save
from matplotlib import pyplot as plt

from keras_attn.data import load_builtin
from keras_attn.models import Classifier, MaskedLanguageModel
from keras_attn.models.fine_tuning import enable_lora, freeze
from keras_attn.tokenizers import WordPieceTokenizer

args = parse_args(__doc__.splitlines()[0], "tutorial_output/04")
keras.utils.set_random_seed(0)
unlabelled = load_builtin("sentiment_negation", "train", num_examples=1000 if args.quick else 12000)
labelled = load_builtin("sentiment_negation", "validation", num_examples=300)
test = load_builtin("sentiment_negation", "test", num_examples=500)
tokenizer = WordPieceTokenizer.train(unlabelled.texts[:2000], vocabulary_size=150)
shape = dict(sequence_length=16, num_layers=2, hidden_dim=64, intermediate_dim=128)

# --- 1. Pretraining: fill in the blanks -----------------------------------------
# 15% of tokens are chosen; of those 80% become [MASK], 10% a random token,
# 10% stay. The model predicts the original tokens. No labels needed.
masked_lm = MaskedLanguageModel.from_preset("tiny", tokenizer=tokenizer, **shape)
masked_lm.compile(optimizer=keras.optimizers.Adam(2e-3))
history = masked_lm.fit(masked_lm.make_dataset(unlabelled.texts, batch_size=64, num_maskings=2),
                        epochs=1 if args.quick else 4, verbose=0)
print("masked-LM loss by epoch:", [round(v, 3) for v in history.history["loss"]])
print(masked_lm.fill_mask(["the film was [MASK] dull"], top_k=3))

# --- 2. Fine-tuning: four ways -----------------------------------------------------
# Each classifier gets the same 300 labelled sentences and the same steps.
epochs = 2 if args.quick else 8


def fine_tune(model, learning_rate=2e-3):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    model.fit(model.make_dataset(labelled.texts, labelled.labels, batch_size=32),
              epochs=epochs, verbose=0)
    accuracy = model.evaluate_data(test)[0]["accuracy"]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return accuracy, trainable


results = {}
# a. From scratch: random encoder, no pretraining.
results["from scratch"] = fine_tune(
    Classifier.from_preset("tiny", tokenizer=tokenizer, num_classes=2, **shape))
# b. Everything trainable, starting from the pretrained encoder (weights are
#    copied, so the masked LM stays as it is).
results["pretrained, all weights"] = fine_tune(Classifier.from_masked_lm(masked_lm, 2))
# c. Frozen encoder: only the new head learns -- cheap, and safe with very
#    little data, but the encoder cannot adapt.
frozen = Classifier.from_masked_lm(masked_lm, 2)
freeze(frozen, backbone=True)
results["pretrained, frozen encoder"] = fine_tune(frozen, learning_rate=5e-3)
# d. LoRA (Hu et al. 2021): the encoder's projections stay frozen and learn a
#    low-rank update B·A each; a fraction of the parameters train.
lora = Classifier.from_masked_lm(masked_lm, 2)
enable_lora(lora, rank=4)
results["pretrained, LoRA rank 4"] = fine_tune(lora, learning_rate=5e-3)

for name, (accuracy, trainable) in results.items():
    print(f"{name:28s} accuracy {accuracy:.3f}, {trainable:,} trainable parameters")
figure, ax = plt.subplots(figsize=(8, 3.5))
ax.barh(list(results), [accuracy for accuracy, _ in results.values()], color="tab:blue")
ax.set(xlim=(0, 1), xlabel="test accuracy", title="fine-tuning on 300 labelled sentences")
save(figure, args.out, "fine_tuning.png")
# What to read from the numbers: on this small, regular language the
# labelled sentences alone already teach a model from scratch; pretraining
# pays off when labels are scarce relative to what the language demands. A
# frozen encoder learns only what its features already separate, and LoRA
# sits between frozen and full fine-tuning at a fraction of the parameters.

# --- 3. Starting from a pretrained checkpoint -----------------------------------------
# Real fine-tuning starts from a checkpoint trained on far more text.
# keras-hub publishes BERT, DistilBERT, GPT-2, LLaMA and more; keras-attn
# converts them into its own models with the same numbers, tokenizer
# included, so they fine-tune, look inside and export like the models above.
# With the internet, that is one line:
#
#     classifier = Classifier.from_keras_hub("bert_base_en_uncased", num_classes=2,
#                                            sequence_length=128)
#
# (or `keras-attn convert bert_base_en_uncased bert_dir --task classifier
# --num-classes 2`). Offline, this script converts a keras-hub BERT it builds
# itself -- the same code path, with a small vocabulary and random weights.
import keras_hub  # noqa: E402

vocabulary = (["[PAD]"] + [f"[unused{i}]" for i in range(99)]
              + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
              + sorted({word for text in unlabelled.texts[:2000] for word in text.split()}))
hub_tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
hub_backbone = keras_hub.models.BertBackbone(
    vocabulary_size=len(vocabulary), num_layers=2, num_heads=4, hidden_dim=64,
    intermediate_dim=128, max_sequence_length=64,
)
hub_model = keras_hub.models.BertTextClassifier(
    backbone=hub_backbone, num_classes=2,
    preprocessor=keras_hub.models.BertTextClassifierPreprocessor(hub_tokenizer,
                                                                 sequence_length=16),
)
converted = Classifier.from_keras_hub(hub_model, num_classes=2, sequence_length=16)
# Same ids, same logits: the conversion is exact.
sample = ["the plot was not dull", "a truly bad film"]
ours = np.asarray(converted(converted.preprocess(sample)[0]))
theirs = np.asarray(hub_model.predict(sample, verbose=0))
hub_ids = hub_tokenizer(sample)  # keras-hub answers eager calls with lists
hub_ids = hub_ids.to_list() if hasattr(hub_ids, "to_list") else hub_ids
same_ids = converted.tokenizer.tokenize(sample).to_list() == [
    [int(i) for i in row] for row in hub_ids
]
print(f"converted BERT: tokenizer ids equal keras-hub's: {same_ids}; "
      f"largest logit difference {np.abs(ours - theirs).max():.1e}")
accuracy, _ = fine_tune(converted)
print(f"fine-tuned the converted BERT: accuracy {accuracy:.3f} (its weights were random: "
      "a real checkpoint is what makes this worth having)")
