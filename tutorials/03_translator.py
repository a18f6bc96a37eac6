"""Tutorial 3: a translator -- built-in data and your own TSV, BLEU, greedy
versus beam search, and cross-attention alignments.

An encoder-decoder `Translator` learns to write dates spelled out in words
as ISO dates ("march the third, nineteen ninety nine" -> "1999-03-03"). We
train it twice: on the built-in dataset directly, and from a tab-separated
file the way you would bring your own pairs, with a SentencePiece tokenizer
trained on the file. Then we compare decoding strategies and look at which
source tokens each output token attended to.

Run: python tutorials/03_translator.py --out tutorial_output/03
"""

import os

import keras
import numpy as np
from common import parse_args, save

from keras_attn.data import load_builtin, read_translation_pairs
from keras_attn.interpret import attention_maps, plot_alignment, relevance
from keras_attn.models import Translator
from keras_attn.tokenizers import SentencePieceTokenizer
from keras_attn.training.metrics import corpus_bleu

args = parse_args(__doc__.splitlines()[0], "tutorial_output/03")
keras.utils.set_random_seed(0)
train_size, epochs = (1000, 2) if args.quick else (20000, 6)
train = load_builtin("dates", "train", num_examples=train_size)
test = load_builtin("dates", "test", num_examples=200)
print("a training pair:", train.sources[0], "->", train.targets[0])

# --- 1. Built-in data, byte-level tokens ----------------------------------------
# The "tiny" preset: 2 + 2 layers of width 64. Byte-level tokens need no
# vocabulary. make_dataset packs sources (tokens + [EOS]) and targets
# ([BOS] tokens [EOS]) to static lengths inside tf.data.
translator = Translator.from_preset("tiny", source_length=64, target_length=12)
translator.compile()
history = translator.fit(translator.make_dataset(train.sources, train.targets, batch_size=64),
                         epochs=epochs, verbose=0)
print("loss by epoch:", [round(value, 3) for value in history.history["loss"]])

# --- 2. Greedy versus beam search, and BLEU -----------------------------------------
# Greedy decoding takes the likeliest token at each step. Beam search keeps
# the `beam_width` best partial translations and returns the best finished
# one, length-normalised with the GNMT penalty. BLEU (sacreBLEU, corpus
# level) compares n-grams with the references; "char" tokenization suits
# outputs without spaces such as dates.
for name, options in [("greedy", {}), ("beam 4", {"beam_width": 4})]:
    outputs = translator.translate(test.sources, **options)
    exact = np.mean([o == t for o, t in zip(outputs, test.targets)])
    bleu = corpus_bleu(outputs, test.targets, tokenize="char")
    print(f"{name:7s} exact match {exact:.3f}, chrBLEU {bleu:.1f}")

# --- 3. Where the output looked: cross-attention ---------------------------------------
# attention_maps runs the model over its own translation and returns every
# layer's and head's weights with the tokens. Cross-attention rows are output
# positions ([BOS] predicts the first digit), columns are source tokens.
sentence = test.sources[0]
(maps,) = attention_maps(translator, [sentence])
print(sentence, "->", translator.translate(sentence))
save(plot_alignment(maps), args.out, "alignment_attention.png")
# Raw weights of one layer can mislead; gradient-weighted relevance (Chefer et
# al. 2021) follows the decoder's last position back to the source tokens.
(explained,) = relevance(translator, [sentence])
save(plot_alignment(explained.relevance["cross"], maps.tokens["source"], maps.tokens["target"]),
     args.out, "alignment_relevance.png")

# --- 4. Your own TSV --------------------------------------------------------------------
# Your data is a file of `source<TAB>target` lines. We write one here; with
# your own, start from read_translation_pairs. Real text wants a lossless
# subword tokenizer: SentencePiece with byte fallback, trained on the file.
path = os.path.join(args.out, "pairs.tsv")
with open(path, "w", encoding="utf-8") as file:
    for source, target in zip(train.sources, train.targets):
        file.write(f"{source}\t{target}\n")
pairs = read_translation_pairs(path)
print(f"read {len(pairs.sources)} pairs from {path}")
tokenizer = SentencePieceTokenizer.train(pairs.sources + pairs.targets, vocabulary_size=320)
print("SentencePiece pieces:", tokenizer.tokenize([pairs.sources[0]]).to_list()[0][:12], "...")
print("lossless:", tokenizer.detokenize(tokenizer.tokenize([pairs.sources[0]])).numpy()[0]
      .decode() == pairs.sources[0])
from_file = Translator.from_preset("tiny", tokenizer=tokenizer, source_length=48,
                                   target_length=12)
from_file.compile()
from_file.fit(from_file.make_dataset(pairs.sources, pairs.targets, batch_size=64),
              epochs=epochs, verbose=0)
outputs = from_file.translate(test.sources)
exact = np.mean([o == t for o, t in zip(outputs, test.targets)])
print(f"trained from the TSV: exact match {exact:.3f}")
from_file.save_to_preset(os.path.join(args.out, "dates_translator"), overwrite=True)
print("saved the preset to", os.path.join(args.out, "dates_translator"))
