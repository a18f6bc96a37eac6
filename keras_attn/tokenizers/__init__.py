"""Tokenizers (text in, text out) and static-shape packing of token ids.

Every tokenizer reserves the same special tokens at the same ids
(`[PAD]`=0, `[UNK]`=1, `[BOS]`=2, `[EOS]`=3, `[SEP]`=4, `[CLS]`=5,
`[MASK]`=6), runs as TensorFlow ops eagerly, in `tf.function` and in
`tf.data`, and saves to a directory with `save(dir_path)` /
`Tokenizer.from_directory(dir_path)`.

- `WordPieceTokenizer.train(texts, vocabulary_size)`: subwords learned from
  your text (keras-hub's WordPiece underneath).
- `SentencePieceTokenizer.train(texts, vocabulary_size)`: unigram or BPE
  pieces learned from your text, lossless (`detokenize(tokenize(text)) ==
  text`) with byte fallback; tensorflow-text's kernels underneath.
- `BytePairTokenizer(vocabulary, merges, special_token_ids)`: a
  checkpoint's byte-level BPE (GPT-2), with the checkpoint's own ids.
- `ByteTokenizer()`: UTF-8 bytes, no vocabulary, exact round trip.
- `pack`, `pack_pair`: ragged ids -> dense `(batch, sequence_length)` with
  padding masks and per-row truncation counts; `TruncationReport` sums them.
"""

from keras_attn.tokenizers.byte_pair_tokenizer import BytePairTokenizer
from keras_attn.tokenizers.byte_tokenizer import ByteTokenizer
from keras_attn.tokenizers.packing import TruncationReport, pack, pack_pair
from keras_attn.tokenizers.sentence_piece_tokenizer import (
    MODEL_FILENAME,
    SentencePieceTokenizer,
)
from keras_attn.tokenizers.special_tokens import (
    BOS_ID,
    BOS_TOKEN,
    CLS_ID,
    CLS_TOKEN,
    EOS_ID,
    EOS_TOKEN,
    MASK_ID,
    MASK_TOKEN,
    PAD_ID,
    PAD_TOKEN,
    SEP_ID,
    SEP_TOKEN,
    SPECIAL_TOKENS,
    UNK_ID,
    UNK_TOKEN,
)
from keras_attn.tokenizers.tokenizer import CONFIG_FILENAME, Tokenizer
from keras_attn.tokenizers.word_piece_tokenizer import VOCABULARY_FILENAME, WordPieceTokenizer

__all__ = [
    "BOS_ID",
    "BOS_TOKEN",
    "CLS_ID",
    "CLS_TOKEN",
    "CONFIG_FILENAME",
    "EOS_ID",
    "EOS_TOKEN",
    "MASK_ID",
    "MASK_TOKEN",
    "MODEL_FILENAME",
    "PAD_ID",
    "PAD_TOKEN",
    "SEP_ID",
    "SEP_TOKEN",
    "SPECIAL_TOKENS",
    "UNK_ID",
    "UNK_TOKEN",
    "VOCABULARY_FILENAME",
    "BytePairTokenizer",
    "ByteTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "TruncationReport",
    "WordPieceTokenizer",
    "pack",
    "pack_pair",
]
