"""A WordPiece subword tokenizer trained on the user's own text."""

import os

import keras
import keras_hub
import numpy as np

# Tokenizers are TensorFlow preprocessing by nature (tf.strings / tf_text ops
# inside tf.data and exported graphs), so this package uses `tf` directly.
import tensorflow as tf

from keras_attn.tokenizers.special_tokens import SPECIAL_ROLES, SPECIAL_TOKENS
from keras_attn.tokenizers.tokenizer import Tokenizer
from keras_attn.utils.arguments import check_positive_int
from keras_attn.utils.atomic_files import write_text_atomically

VOCABULARY_FILENAME = "vocabulary.txt"
_NO_WORDS = "`texts` must contain at least one word. Received: texts with no words"


@keras.saving.register_keras_serializable(package="keras_attn")
class WordPieceTokenizer(Tokenizer):
    """WordPiece subword tokenizer (BERT's), built on keras-hub's.

    Text is normalized (optionally lowercased and accent-stripped), split on
    whitespace and punctuation (each punctuation mark is a word, so are CJK
    characters), and every word is cut into the longest vocabulary pieces
    from the left, continuation pieces starting with `suffix_indicator`
    (`"##"`). A word that cannot be cut, e.g. one with a character never seen
    in training, becomes a single `[UNK]`.

    `detokenize` joins pieces into words and words with single spaces, so it
    inverts `tokenize` only up to normalization and spacing:
    `"The dog, asleep."` -> `"the dog , asleep ."` with `lowercase=True`.
    For text that is not a special token spelling, `detokenize(tokenize(
    text)) == normalise(text)`, where `normalise`:

    1. with `strip_accents`, decomposes the text (Unicode NFD) and drops
       its nonspacing marks (category Mn);
    2. cuts it into words: ASCII whitespace (space, tab, newline, carriage
       return, form feed), control characters (Cc, NUL included) and format
       characters (Cf, e.g. zero-width space, soft hyphen, bidi marks) end a
       word and are dropped; each punctuation mark (Unicode category P*, and
       every printable ASCII character that is not a letter or digit, such
       as `$+<=>^`|~`) and, with `split_on_cjk`, each CJK ideograph is a
       word of its own. Other spaces (no-break space U+00A0, U+3000) are
       word characters;
    3. with `lowercase`, maps each word through Unicode NFKC_Casefold (full
       case folding plus compatibility forms, dropping default-ignorable
       characters: `"Straße"` -> `"strasse"`, `"ﬁ"` -> `"fi"`, no-break
       space -> space);
    4. replaces each word that the vocabulary cannot spell (a character
       never seen in training, or more than 100 UTF-8 bytes) by `[UNK]`;
    5. joins the words with single spaces.

    Build one from data with `WordPieceTokenizer.train(texts,
    vocabulary_size)`, or from a known vocabulary whose first seven tokens are
    `keras_attn.tokenizers.SPECIAL_TOKENS`, or from a pretrained checkpoint's
    vocabulary whose special tokens sit elsewhere, named by `special_tokens`
    (e.g. BERT's `[PAD]`=0, `[UNK]`=100, `[CLS]`=101, `[SEP]`=102,
    `[MASK]`=103; see `keras_attn.models.converters.convert_bert_tokenizer`).
    The vocabulary is saved as the
    asset `vocabulary.txt` (one token per line, the keras-hub format), not in
    `get_config()`; see `Tokenizer` for `save` / `from_directory`.

    Args:
        vocabulary: list of token strings, index = id, starting with the
            seven special tokens (unless `special_tokens` is given); or
            `None` to load it later with `load_assets`.
        lowercase: bool, case-fold the text before splitting.
        strip_accents: bool, remove accents (Unicode NFD, then drop combining
            marks) before splitting.
        split_on_cjk: bool, make each CJK character a word.
        suffix_indicator: str, prefix of continuation pieces.
        special_tokens_in_strings: bool, map special token strings that occur
            in the text (e.g. `"[MASK]"`) to their ids instead of splitting
            them like ordinary text.
        special_tokens: `None` (the keras-attn special tokens at ids 0-6),
            or a dict mapping every role of
            `keras_attn.tokenizers.SPECIAL_ROLES` (`"pad"`, `"unk"`, `"bos"`,
            `"eos"`, `"sep"`, `"cls"`, `"mask"`) to a token of `vocabulary`,
            wherever it sits; roles may share a token (BERT has no start or
            end token: `"bos"` is `[CLS]` and `"eos"` is `[SEP]`, as in
            keras-hub). `special_token_ids` then reads the ids from the
            vocabulary, and the `"unk"` token stands for words the
            vocabulary cannot spell. Kept in `get_config()`.
        **kwargs: standard layer arguments (`name`, ...).

    Example:
    >>> tokenizer = WordPieceTokenizer.train(["the cat sat", "the dog sat"] * 10, 64)
    >>> ids = tokenizer.tokenize(["The cat sat", "the cow"])  # ragged int32 (2, None)
    >>> [len(row) for row in ids.to_list()]
    [3, 2]
    >>> tokenizer.detokenize(ids).numpy().tolist()  # lowercased; "w" was never seen
    [b'the cat sat', b'the [UNK]']
    """

    def __init__(
        self,
        vocabulary=None,
        lowercase=True,
        strip_accents=False,
        split_on_cjk=True,
        suffix_indicator="##",
        special_tokens_in_strings=False,
        special_tokens=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._special_token_map = _check_special_tokens(special_tokens)
        self.lowercase = bool(lowercase)
        self.strip_accents = bool(strip_accents)
        self.split_on_cjk = bool(split_on_cjk)
        if not isinstance(suffix_indicator, str) or not suffix_indicator:
            raise ValueError(
                "`suffix_indicator` must be a non-empty string. "
                f"Received: suffix_indicator={suffix_indicator!r}"
            )
        self.suffix_indicator = suffix_indicator
        self.special_tokens_in_strings = bool(special_tokens_in_strings)
        self._vocabulary = None
        self._token_ids = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary)

    @classmethod
    def train(
        cls,
        texts,
        vocabulary_size,
        lowercase=True,
        strip_accents=False,
        split_on_cjk=True,
        suffix_indicator="##",
        special_tokens_in_strings=False,
        **kwargs,
    ):
        """Learns a vocabulary from `texts` and returns a tokenizer using it.

        Uses `keras_hub.tokenizers.compute_word_piece_vocabulary` with the
        special tokens reserved first. The same texts and arguments always
        give the same vocabulary. Every character of the training words is
        kept, as a word start and as a `##` suffix, so text made of seen
        characters never turns into `[UNK]`: a `vocabulary_size` too small
        for that raises `ValueError` with the size needed. Multi-character
        pieces fill the rest by frequency (the learner skips pieces seen
        fewer than about 10 times, so small corpora give small vocabularies).

        Args:
            texts: a list of strings or a `tf.data.Dataset` of strings
                (scalar or batched elements).
            vocabulary_size: int, the largest vocabulary wanted, special
                tokens included; the result can be smaller.
            lowercase, strip_accents, split_on_cjk, suffix_indicator,
            special_tokens_in_strings: as in the constructor, used both for
                training and by the returned tokenizer.
            **kwargs: standard layer arguments (`name`, ...).

        Returns:
            A `WordPieceTokenizer`.
        """
        vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        if vocabulary_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"`vocabulary_size` must be greater than {len(SPECIAL_TOKENS)}, the number of "
                f"special tokens {', '.join(SPECIAL_TOKENS)}, to leave room for text tokens. "
                f"Received: vocabulary_size={vocabulary_size}"
            )
        dataset = _text_dataset(texts)
        try:
            vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
                dataset,
                vocabulary_size,
                lowercase=lowercase,
                strip_accents=strip_accents,
                split=True,
                split_on_cjk=split_on_cjk,
                suffix_indicator=suffix_indicator,
                reserved_tokens=list(SPECIAL_TOKENS),
            )
        except StopIteration as error:
            # The learner's word counter takes the first word of an empty count.
            raise ValueError(_NO_WORDS) from error
        if len(vocabulary) <= len(SPECIAL_TOKENS):
            raise ValueError(_NO_WORDS)
        vocabulary = _keep_whole_alphabet(vocabulary, vocabulary_size, suffix_indicator)
        return cls(
            vocabulary=vocabulary,
            lowercase=lowercase,
            strip_accents=strip_accents,
            split_on_cjk=split_on_cjk,
            suffix_indicator=suffix_indicator,
            special_tokens_in_strings=special_tokens_in_strings,
            **kwargs,
        )

    def set_vocabulary(self, vocabulary):
        """Replaces the vocabulary (a list of tokens starting with the
        special tokens, or holding the `special_tokens` given)."""
        vocabulary = _check_vocabulary(vocabulary, self._special_token_map)
        self._vocabulary = vocabulary
        self._token_ids = {token: index for index, token in enumerate(vocabulary)}
        role_tokens = self._special_token_map or dict(zip(SPECIAL_ROLES, SPECIAL_TOKENS))
        self._special_ids = {role: self._token_ids[token] for role, token in role_tokens.items()}
        # The keras-hub layer does the work; it stays untracked because this
        # tokenizer saves the vocabulary itself (one copy in `.keras` files).
        self._untracked.word_piece = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=vocabulary,
            lowercase=self.lowercase,
            strip_accents=self.strip_accents,
            split=True,
            split_on_cjk=self.split_on_cjk,
            suffix_indicator=self.suffix_indicator,
            oov_token=role_tokens["unk"],
            special_tokens=list(dict.fromkeys(role_tokens.values())),
            special_tokens_in_strings=self.special_tokens_in_strings,
            dtype="int32",
        )
        self._forget_graphs()

    @property
    def special_token_ids(self):
        if self._special_token_map is None:
            return super().special_token_ids
        self._checked_vocabulary()
        return dict(self._special_ids)

    @property
    def vocabulary_size(self):
        return len(self._checked_vocabulary())

    def get_vocabulary(self):
        return list(self._checked_vocabulary())

    def token_to_id(self, token):
        self._checked_vocabulary()
        if token not in self._token_ids:
            raise ValueError(f"`token` must be in the vocabulary. Received: token={token!r}")
        return self._token_ids[token]

    def id_to_token(self, id):
        vocabulary = self._checked_vocabulary()
        if isinstance(id, (bool, np.bool_)) or not isinstance(id, (int, np.integer)):
            raise ValueError(f"`id` must be an integer. Received: id={id!r}")
        if not 0 <= id < len(vocabulary):
            raise ValueError(
                f"`id` must be in [0, {len(vocabulary)}). Received: id={id!r}"
            )
        return vocabulary[int(id)]

    def _tokenize_batch(self, texts):
        self._checked_vocabulary()
        return self._untracked.word_piece.tokenize(_nul_as_space(texts))

    def _detokenize_batch(self, ids):
        self._checked_vocabulary()
        return self._untracked.word_piece.detokenize(ids)

    @property
    def has_vocabulary(self):
        return self._vocabulary is not None

    def _checked_vocabulary(self):
        if self._vocabulary is None:
            raise ValueError(
                "This WordPieceTokenizer has no vocabulary yet. Build it with "
                "`WordPieceTokenizer.train(texts, vocabulary_size)`, pass `vocabulary=`, or "
                "load one with `Tokenizer.from_directory(dir_path)` / `load_assets(dir_path)`."
            )
        return self._vocabulary

    def save_assets(self, dir_path):
        text = "".join(token + "\n" for token in self._checked_vocabulary())
        write_text_atomically(os.path.join(dir_path, VOCABULARY_FILENAME), text)

    def load_assets(self, dir_path):
        path = os.path.join(dir_path, VOCABULARY_FILENAME)
        # newline="" keeps every character of a token: only "\n" separates.
        with open(path, encoding="utf-8", newline="") as file:
            tokens = file.read().split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.set_vocabulary(tokens)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "lowercase": self.lowercase,
                "strip_accents": self.strip_accents,
                "split_on_cjk": self.split_on_cjk,
                "suffix_indicator": self.suffix_indicator,
                "special_tokens_in_strings": self.special_tokens_in_strings,
                "special_tokens": (
                    None if self._special_token_map is None else dict(self._special_token_map)
                ),
            }
        )
        return config


def _nul_as_space(texts):
    """NUL separates words like the other control characters; tf_text's
    word splitting would instead end the text there."""
    return tf.strings.regex_replace(texts, "\\x00", " ")


def _keep_whole_alphabet(vocabulary, vocabulary_size, suffix_indicator):
    """Makes room for every character both as a word start and as a suffix.

    The learner's vocabulary lists specials, characters, then pieces by
    frequency (rare `##c` suffix characters late), and keras-hub cuts it at
    `vocabulary_size`. A cut that drops some `##c` turns every word with a
    non-initial `c` into `[UNK]`, so frequent whole-word pieces give way to
    the suffix characters instead; raises if even the alphabet cannot fit.
    """
    reserved = len(SPECIAL_TOKENS)
    learned = vocabulary[reserved:]
    characters = [token for token in learned if len(token) == 1]
    suffixes = [suffix_indicator + character for character in characters]
    present = set(learned)
    if all(suffix in present for suffix in suffixes):
        return vocabulary
    needed = reserved + 2 * len(characters)
    if needed > vocabulary_size:
        raise ValueError(
            f"`vocabulary_size` must be at least {needed} for these `texts`: the special tokens "
            f"plus each character twice, as a word start and as a '{suffix_indicator}' suffix "
            f"({len(characters)} characters found), else most words become [UNK]. "
            f"Received: vocabulary_size={vocabulary_size}"
        )
    alphabet = set(characters) | set(suffixes)
    pieces = [token for token in learned if token not in alphabet]
    head = list(SPECIAL_TOKENS) + characters + suffixes
    return head + pieces[: vocabulary_size - len(head)]


def _check_special_tokens(special_tokens):
    """`special_tokens` as a `{role: token}` dict over every special role,
    or `None` for the keras-attn tokens at ids 0-6."""
    if special_tokens is None:
        return None
    if not isinstance(special_tokens, dict):
        raise ValueError(
            "`special_tokens` must be None or a dict mapping each role of "
            f"{list(SPECIAL_ROLES)} to a token. Received: special_tokens={special_tokens!r}"
        )
    missing = [role for role in SPECIAL_ROLES if role not in special_tokens]
    unknown = sorted(str(role) for role in special_tokens if role not in SPECIAL_ROLES)
    if missing or unknown:
        raise ValueError(
            f"`special_tokens` must map exactly the roles {list(SPECIAL_ROLES)} to tokens. "
            f"Received: special_tokens missing {missing} and with unknown roles {unknown}"
        )
    bad = {role: token for role, token in special_tokens.items() if not isinstance(token, str)
           or not token or "\n" in token}
    if bad:
        raise ValueError(
            "`special_tokens` must map roles to non-empty token strings without newlines. "
            f"Received: special_tokens with {bad!r}"
        )
    return {role: special_tokens[role] for role in SPECIAL_ROLES}


def _check_vocabulary(vocabulary, special_tokens=None):
    if isinstance(vocabulary, str) or not all(isinstance(token, str) for token in vocabulary):
        raise ValueError(
            "`vocabulary` must be a list of token strings. "
            f"Received: vocabulary={_preview(vocabulary)}"
        )
    vocabulary = list(vocabulary)
    if special_tokens is None:
        if tuple(vocabulary[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"`vocabulary` must start with the special tokens {list(SPECIAL_TOKENS)}. "
                f"Received: vocabulary={_preview(vocabulary)}"
            )
        special_count = len(SPECIAL_TOKENS)
    else:
        present = set(vocabulary)
        absent = {role: token for role, token in special_tokens.items() if token not in present}
        if absent:
            raise ValueError(
                "`vocabulary` must hold every token of `special_tokens`. Received: "
                f"vocabulary={_preview(vocabulary)} without {absent!r}"
            )
        special_count = len(set(special_tokens.values()))
    if len(vocabulary) <= special_count:
        raise ValueError(
            "`vocabulary` must have tokens besides the special tokens. "
            f"Received: vocabulary={_preview(vocabulary)}"
        )
    if len(set(vocabulary)) != len(vocabulary):
        seen, repeated = set(), []
        for token in vocabulary:
            if token in seen:
                repeated.append(token)
            seen.add(token)
        raise ValueError(
            f"`vocabulary` must not repeat tokens. Received: vocabulary repeating {repeated[:5]}"
        )
    if any(not token or "\n" in token for token in vocabulary):
        raise ValueError(
            "`vocabulary` tokens must be non-empty and hold no newline. "
            f"Received: vocabulary={_preview(vocabulary)}"
        )
    return vocabulary


def _preview(value, limit=12):
    if isinstance(value, (list, tuple)) and len(value) > limit:
        return f"{list(value[:limit])!r}... ({len(value)} tokens)"
    return repr(value)


def _text_dataset(texts):
    """`texts` as a `tf.data.Dataset` of string batches."""
    if isinstance(texts, tf.data.Dataset):
        spec = texts.element_spec
        if not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.string:
            raise ValueError(
                "`texts` must be a list of strings or a tf.data.Dataset of strings. "
                f"Received: texts, a Dataset with element_spec={spec}"
            )
        return texts.map(_nul_as_space)
    if isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple, np.ndarray)):
        raise ValueError(
            "`texts` must be a list of strings or a tf.data.Dataset of strings. "
            f"Received: texts={_preview(texts)}"
        )
    texts = list(texts)
    if not texts:
        raise ValueError("`texts` must contain at least one string. Received: texts=[]")
    if not all(isinstance(text, (str, bytes)) for text in texts):
        raise ValueError(
            f"`texts` must be a list of strings. Received: texts={_preview(texts)}"
        )
    # Batches make the learner's word counting fast; the order is kept.
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, dtype=tf.string)).batch(1024)
    return dataset.map(_nul_as_space)
