"""A SentencePiece subword tokenizer: trained on the user's own text, lossless."""

import io
import os

import keras
import numpy as np
import sentencepiece

# Tokenizers are TensorFlow preprocessing by nature (tf.strings / tf_text ops
# inside tf.data and exported graphs), so this package uses `tf` directly.
import tensorflow as tf
import tensorflow_text

from keras_attn.tokenizers.special_tokens import (
    BOS_ID,
    BOS_TOKEN,
    CLS_TOKEN,
    EOS_ID,
    EOS_TOKEN,
    MASK_TOKEN,
    PAD_ID,
    PAD_TOKEN,
    SEP_TOKEN,
    SPECIAL_ROLES,
    SPECIAL_TOKENS,
    UNK_ID,
    UNK_TOKEN,
)
from keras_attn.tokenizers.tokenizer import Tokenizer
from keras_attn.utils.arguments import (
    check_boolean,
    check_choice,
    check_positive_int,
    check_unit_interval,
)
from keras_attn.utils.atomic_files import write_bytes_atomically

MODEL_FILENAME = "sentencepiece.model"
MODEL_TYPES = ("unigram", "bpe")
# SentencePiece writes spaces as U+2581 "▁" inside pieces and turns every
# U+2581 back into a space when it decodes.
WHITESPACE_SYMBOL = "\u2581"
_BYTE_PIECES = 256

# What makes the trained model lossless and keeps the keras-attn special ids.
_TRAINING_OPTIONS = {
    # The default nmt_nfkc rule rewrites text ("ﬁ" -> "fi", full-width "Ａ"
    # -> "A", NBSP -> space): identity keeps every character as written.
    "normalization_rule_name": "identity",
    # The default puts a space before every text and removes a leading
    # space on decoding, so " x" and "x" would decode alike.
    "add_dummy_prefix": False,
    # The default strips leading / trailing spaces and collapses runs.
    "remove_extra_whitespaces": False,
    # Runs of spaces (indentation, alignment) may become single pieces.
    "allow_whitespace_only_pieces": True,
    "pad_id": PAD_ID,
    "unk_id": UNK_ID,
    "bos_id": BOS_ID,
    "eos_id": EOS_ID,
    "pad_piece": PAD_TOKEN,
    "unk_piece": UNK_TOKEN,
    "bos_piece": BOS_TOKEN,
    "eos_piece": EOS_TOKEN,
    # Control symbols never match text, so a literal "[SEP]" in the text
    # stays text; "[MASK]" is user-defined: it matches the literal "[MASK]"
    # and detokenizes back to it, like `[UNK]` (spelled "[UNK]", not " ⁇ ").
    "control_symbols": [SEP_TOKEN, CLS_TOKEN],
    "user_defined_symbols": [MASK_TOKEN],
    "unk_surface": UNK_TOKEN,
    # `vocabulary_size` is the most wanted: small corpora give fewer pieces.
    "hard_vocab_limit": False,
    "minloglevel": 2,
}


@keras.saving.register_keras_serializable(package="keras_attn")
class SentencePieceTokenizer(Tokenizer):
    """SentencePiece subword tokenizer (Kudo & Richardson, 2018), lossless.

    Text is cut into pieces of a unigram language model or BPE merges
    learned from your text; spaces are part of the pieces (written `"▁"`),
    so the text is not split into words first and nothing about its spacing
    is lost. With byte fallback (the default of `train`) a character without
    a piece of its own is spelled as its UTF-8 bytes (pieces `"<0x00>"` ...
    `"<0xFF>"`), so no text turns into `[UNK]` and `detokenize(tokenize(
    text)) == text` for any text: runs of spaces, leading / trailing spaces,
    newlines and tabs, accents (composed or not), CJK, emoji, right-to-left
    scripts, control characters, the literal `"▁"`.

    `train` makes it so: identity normalization (SentencePiece's default
    NFKC rewrites characters), no dummy prefix space, whitespace kept as it
    is. A model given to the constructor keeps its own normalization and is
    lossless only if it was trained that way.

    The special tokens keep the keras-attn ids 0-6: `[PAD]`, `[UNK]`,
    `[BOS]`, `[EOS]` are SentencePiece's pad / unk / bos / eos, `[SEP]` and
    `[CLS]` control symbols (a literal `"[SEP]"` in the text is ordinary
    text), and `[MASK]` a user-defined symbol (a literal `"[MASK]"` becomes
    `mask_id` and detokenizes back to `"[MASK]"`). `detokenize` follows
    `Tokenizer`: it stops at the first `[EOS]`, drops structural ids,
    spells `[UNK]` and `[MASK]` out, reads out-of-range ids as `[UNK]`, and
    byte pieces that do not form UTF-8 (a model's output can be anything)
    as U+FFFD.

    A pretrained checkpoint's model (e.g. LLaMA's, with `<unk>`, `<s>`,
    `</s>` at ids 0, 1, 2) keeps its own pieces and ids: pass
    `special_tokens`, which piece plays each role. Its ids are then those
    of the checkpoint's own SentencePiece tokenizer (keras-hub's, on the
    same text), normalization and dummy prefix included; a literal `"▁"`
    in the text reads as a space there, as in the checkpoint's training.

    `tokenize` / `detokenize` run tensorflow-text's SentencePiece kernels,
    so they work in `tf.data`, the preprocessors and exported SavedModels
    (a server loads tensorflow-text's ops, see `keras_attn.export.export`).
    The model proto is saved as the asset `sentencepiece.model`, not in
    `get_config()`; see `Tokenizer` for `save` / `from_directory`.

    Args:
        proto: the serialized SentencePiece model (`bytes`), or the path of
            a `.model` file, whose first seven pieces are
            `keras_attn.tokenizers.SPECIAL_TOKENS` (without `special_tokens`);
            or `None` to load it later with `load_assets`.
        special_tokens: `None` (the keras-attn special tokens at ids 0-6),
            or for a checkpoint's model a dict naming, for each of the roles
            `"pad"`, `"unk"`, `"bos"`, `"eos"`, `"sep"`, `"cls"`, `"mask"`,
            the piece of `proto` that plays it (roles may share a piece:
            LLaMA has no padding, separator, class or mask token and maps
            them to `<unk>`, `</s>`, `<s>`, `<unk>`). `special_token_ids`
            follows; the mapping is kept in `get_config()`.
        **kwargs: standard layer arguments (`name`, ...).

    Example:
    >>> texts = ["Save the file (Ctrl+S).", "Datei speichern  (Strg+S)."] * 20
    >>> tokenizer = SentencePieceTokenizer.train(texts, vocabulary_size=300)
    >>> ids = tokenizer.tokenize(["  Speichern (Ctrl+S)!\\n", "东京 😀"])
    >>> tokenizer.detokenize(ids).numpy().tolist() == [
    ...     "  Speichern (Ctrl+S)!\\n".encode(), "东京 😀".encode()]
    True
    """

    def __init__(self, proto=None, special_tokens=None, **kwargs):
        super().__init__(**kwargs)
        self._proto = None
        self._special_tokens = _check_special_tokens(special_tokens)
        if proto is not None:
            self.set_proto(proto)

    @classmethod
    def train(
        cls,
        texts,
        vocabulary_size,
        model_type="unigram",
        character_coverage=0.9995,
        byte_fallback=True,
        max_sentence_length=65536,
        **kwargs,
    ):
        """Learns a SentencePiece model from `texts`; returns a tokenizer.

        Trains in memory with the `sentencepiece` package (no files are
        written), with the options that make the model lossless (see the
        class docstring) and the special tokens at ids 0-6. The same texts
        and arguments give the same model.

        Args:
            texts: a list of strings or a `tf.data.Dataset` of strings
                (scalar or batched elements).
            vocabulary_size: int, the largest vocabulary wanted, special
                tokens (and the 256 byte pieces of byte fallback) included;
                small corpora can give fewer pieces. Too small for the
                characters that must have pieces raises `ValueError`.
            model_type: `"unigram"` (a unigram language model, pieces
                chosen by likelihood) or `"bpe"` (byte-pair merges).
            character_coverage: share of the characters of `texts` (by
                count) that get pieces of their own, in (0, 1]; the rarest
                others are spelled in bytes (or are `[UNK]` without byte
                fallback). SentencePiece's default, 0.9995, suits large
                character sets (CJK); 1.0 keeps every character seen.
            byte_fallback: bool, reserve the 256 byte pieces so any text
                round-trips; without it, unseen characters are `[UNK]`.
            max_sentence_length: int, texts longer than this many UTF-8
                bytes are left out of training (not out of tokenization).
            **kwargs: standard layer arguments (`name`, ...).

        Returns:
            A `SentencePieceTokenizer`.
        """
        vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        model_type = check_choice("model_type", model_type, MODEL_TYPES)
        character_coverage = check_unit_interval("character_coverage", character_coverage)
        byte_fallback = check_boolean("byte_fallback", byte_fallback)
        max_sentence_length = check_positive_int("max_sentence_length", max_sentence_length)
        reserved = len(SPECIAL_TOKENS) + (_BYTE_PIECES if byte_fallback else 0)
        if vocabulary_size <= reserved:
            what = " and the 256 byte pieces of byte fallback" if byte_fallback else ""
            raise ValueError(
                f"`vocabulary_size` must be greater than {reserved}, the special tokens{what}, "
                f"to leave room for text pieces. Received: vocabulary_size={vocabulary_size}"
            )
        sentences = _training_sentences(texts)
        model = io.BytesIO()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_writer=model,
                vocab_size=vocabulary_size,
                model_type=model_type,
                character_coverage=character_coverage,
                byte_fallback=byte_fallback,
                max_sentence_length=max_sentence_length,
                # One thread: the model then depends on the texts only.
                num_threads=1,
                **_TRAINING_OPTIONS,
            )
        except RuntimeError as error:
            raise ValueError(_training_error(error, vocabulary_size)) from None
        return cls(proto=model.getvalue(), **kwargs)

    def set_proto(self, proto):
        """Replaces the SentencePiece model (serialized bytes or a path)."""
        proto = _read_proto(proto)
        try:
            processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
        except RuntimeError as error:
            raise ValueError(
                f"`proto` must be a serialized SentencePiece model. Received: {len(proto)} "
                f"bytes that SentencePiece cannot read ({error})"
            ) from None
        pieces = [processor.id_to_piece(index) for index in range(processor.get_piece_size())]
        piece_ids = {piece: index for index, piece in enumerate(pieces)}
        if self._special_tokens is not None:
            missing = {
                role: piece for role, piece in self._special_tokens.items()
                if piece not in piece_ids
            }
            if missing:
                raise ValueError(
                    "`special_tokens` must name pieces of `proto`. Received: "
                    f"special_tokens with {missing}, which the model does not have"
                )
        elif tuple(pieces[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"`proto` must be a SentencePiece model whose first pieces are the special "
                f"tokens {list(SPECIAL_TOKENS)} (as `SentencePieceTokenizer.train` makes). "
                f"Received: a model starting with {pieces[: len(SPECIAL_TOKENS)]}"
            )
        if self._special_tokens is None and len(pieces) == len(SPECIAL_TOKENS):
            raise ValueError("`proto` must have pieces besides the special tokens.")
        self._proto = proto
        untracked = self._untracked
        untracked.pieces = pieces
        untracked.piece_ids = piece_ids
        untracked.byte_fallback = _byte_ids(processor, WHITESPACE_SYMBOL) is not None
        # A checkpoint's model reads "▁" as its training did (a space); only
        # the lossless models trained here spell it in bytes.
        untracked.symbol_byte_ids = (
            _byte_ids(processor, WHITESPACE_SYMBOL) if self._special_tokens is None else None
        )
        untracked.special_token_ids = (
            None if self._special_tokens is None
            else {role: piece_ids[piece] for role, piece in self._special_tokens.items()}
        )
        self._forget_graphs()

    @property
    def proto(self):
        """The serialized SentencePiece model (`bytes`)."""
        return self._checked_proto()

    @property
    def byte_fallback(self):
        """Whether characters without pieces are spelled in bytes (lossless)."""
        self._checked_proto()
        return self._untracked.byte_fallback

    @property
    def special_token_ids(self):
        """`{role: id}`: 0-6 for models trained here; with `special_tokens`,
        the ids of the checkpoint's pieces (known once the proto is)."""
        if self._special_tokens is None:
            return super().special_token_ids
        self._checked_proto()
        return dict(self._untracked.special_token_ids)

    @property
    def special_tokens_by_role(self):
        """The `special_tokens` mapping `{role: piece}` given at
        construction, or `None` for the keras-attn special tokens."""
        return None if self._special_tokens is None else dict(self._special_tokens)

    @property
    def has_vocabulary(self):
        return self._proto is not None

    @property
    def vocabulary_size(self):
        self._checked_proto()
        return len(self._untracked.pieces)

    def get_vocabulary(self):
        self._checked_proto()
        return list(self._untracked.pieces)

    def token_to_id(self, token):
        self._checked_proto()
        if not isinstance(token, str) or token not in self._untracked.piece_ids:
            raise ValueError(
                f"`token` must be a piece of the vocabulary (spaces written '▁', bytes "
                f"'<0x41>'). Received: token={token!r}"
            )
        return self._untracked.piece_ids[token]

    def id_to_token(self, id):
        size = self.vocabulary_size
        if isinstance(id, (bool, np.bool_)) or not isinstance(id, (int, np.integer)):
            raise ValueError(f"`id` must be an integer. Received: id={id!r}")
        if not 0 <= id < size:
            raise ValueError(f"`id` must be in [0, {size}). Received: id={id!r}")
        return self._untracked.pieces[int(id)]

    def _kernels(self):
        """tensorflow-text's SentencePiece ops for the graph being built.

        Each graph (the eager `tf.function`s, `tf.data` maps, exported
        signatures) makes its own model resource from the proto, which its
        graph holds as an attribute. A resource made once eagerly and
        captured would be owned by TensorFlow's eager kernel cache, which
        `tf.random.set_seed` (`keras.utils.set_random_seed`) clears
        (tensorflow/text#570), and an export would need it tracked.
        """
        return tensorflow_text.SentencepieceTokenizer(model=self._checked_proto())

    def _tokenize_batch(self, texts):
        sentence_piece = self._kernels()
        symbol_ids = self._untracked.symbol_byte_ids
        if symbol_ids is None:
            return sentence_piece.tokenize(texts).with_row_splits_dtype(tf.int64)
        # SentencePiece would read a literal "▁" as a space. The text is cut
        # at each one and the pieces of the parts are joined by its UTF-8
        # byte pieces, which detokenize to "▁" itself.
        parts = tf.strings.split(texts, sep=WHITESPACE_SYMBOL)  # every text has >= 1 part
        part_ids = sentence_piece.tokenize(parts.values).with_row_splits_dtype(tf.int64)
        symbol = tf.constant([symbol_ids], tf.int32)
        symbols = tf.RaggedTensor.from_tensor(tf.tile(symbol, [part_ids.nrows(), 1]))
        joined = tf.RaggedTensor.from_row_splits(
            tf.concat([part_ids, symbols], axis=1), parts.row_splits
        ).merge_dims(1, 2)
        lengths = joined.row_lengths()
        # Each text's last part is followed by no symbol.
        keep = tf.ragged.range(lengths) < tf.expand_dims(lengths - len(symbol_ids), 1)
        return tf.ragged.boolean_mask(joined, keep)

    def _detokenize_batch(self, ids):
        return self._kernels().detokenize(ids)

    def _checked_proto(self):
        if self._proto is None:
            raise ValueError(
                "This SentencePieceTokenizer has no model yet. Build it with "
                "`SentencePieceTokenizer.train(texts, vocabulary_size)`, pass `proto=`, or load "
                "one with `Tokenizer.from_directory(dir_path)` / `load_assets(dir_path)`."
            )
        return self._proto

    def get_config(self):
        # The proto travels as an asset (`save_assets`), not in the config.
        config = super().get_config()
        config["special_tokens"] = self.special_tokens_by_role
        return config

    def save_assets(self, dir_path):
        write_bytes_atomically(os.path.join(dir_path, MODEL_FILENAME), self._checked_proto())

    def load_assets(self, dir_path):
        self.set_proto(os.path.join(dir_path, MODEL_FILENAME))


def _check_special_tokens(special_tokens):
    """`None`, or a `{role: piece}` dict naming exactly the special roles."""
    if special_tokens is None:
        return None
    if not isinstance(special_tokens, dict) or set(special_tokens) != set(SPECIAL_ROLES):
        received = sorted(special_tokens) if isinstance(special_tokens, dict) else special_tokens
        raise ValueError(
            f"`special_tokens` must be None or a dict naming a piece for each of the roles "
            f"{list(SPECIAL_ROLES)}. Received: special_tokens={received!r}"
        )
    for role, piece in special_tokens.items():
        if not isinstance(piece, str) or not piece:
            raise ValueError(
                f"`special_tokens[{role!r}]` must be a piece (a non-empty string). "
                f"Received: {piece!r}"
            )
    return {role: special_tokens[role] for role in SPECIAL_ROLES}


def _byte_ids(processor, text):
    """Ids of the byte pieces spelling `text` in UTF-8; `None` without byte
    fallback."""
    ids = []
    for byte in text.encode("utf-8"):
        index = processor.piece_to_id(f"<0x{byte:02X}>")
        if not processor.is_byte(index):
            return None
        ids.append(index)
    return tuple(ids)


def _read_proto(proto):
    if isinstance(proto, (str, os.PathLike)):
        path = os.fspath(proto)
        if not os.path.isfile(path):
            raise ValueError(
                f"`proto` must be SentencePiece model bytes or the path of a model file. "
                f"Received: proto={path!r}, which is not a file"
            )
        with open(path, "rb") as file:
            return file.read()
    if isinstance(proto, (bytes, bytearray)):
        return bytes(proto)
    raise ValueError(
        "`proto` must be SentencePiece model bytes or the path of a model file. "
        f"Received: proto of type {type(proto).__name__}"
    )


def _training_error(error, vocabulary_size):
    message = " ".join(str(error).split())
    if "vocab" in message.lower() or "required_chars" in message:
        return (
            f"`vocabulary_size` does not suit these `texts` (SentencePiece: {message}). "
            f"Received: vocabulary_size={vocabulary_size}"
        )
    return f"SentencePiece could not learn from `texts` with these arguments: {message}"


def _preview(texts, limit=3):
    if isinstance(texts, (list, tuple)) and len(texts) > limit:
        return f"{list(texts[:limit])!r}... ({len(texts)} texts)"
    return repr(texts)


def _training_sentences(texts):
    """`texts` as a list of `str` (a list, array or `tf.data.Dataset`)."""
    expected = "`texts` must be a list of strings or a tf.data.Dataset of strings."
    if isinstance(texts, tf.data.Dataset):
        spec = texts.element_spec
        if not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.string:
            raise ValueError(f"{expected} Received: texts, a Dataset with element_spec={spec}")
        texts = [
            text
            for element in texts.as_numpy_iterator()
            for text in np.asarray(element, dtype=object).reshape(-1)
        ]
    elif isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple, np.ndarray)):
        raise ValueError(f"{expected} Received: texts={_preview(texts)}")
    sentences = []
    for text in texts:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(
                    f"`texts` must be UTF-8. Received: a text that is not: {text[:40]!r}"
                ) from None
        if not isinstance(text, str):
            raise ValueError(f"{expected} Received: texts={_preview(list(texts))}")
        sentences.append(text)
    if not any(sentences):
        raise ValueError(
            f"`texts` must contain at least one non-empty string. Received: texts="
            f"{_preview(sentences)}"
        )
    return sentences
