"""Round trips as properties over generated Unicode text.

SentencePiece (with byte fallback) and bytes give the text back exactly;
WordPiece gives back its documented normalization of the text (see the
`WordPieceTokenizer` docstring), written here as `word_piece_normalise`.
"""

import string
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_attn.tokenizers import ByteTokenizer, SentencePieceTokenizer, WordPieceTokenizer

DEFAULT = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SLOW = settings(
    max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def chars(low, high):
    return st.characters(min_codepoint=low, max_codepoint=high)


def runs(strategy, min_size=1, max_size=4):
    return st.lists(strategy, min_size=min_size, max_size=max_size).map("".join)


# Pieces of text, by kind. Each generated text holds at least one of each.
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»…–—‘’“”·、。，！？「」"
CONTROLS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))]
FORMATS = ["\u00ad", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202e",
           "\u2060", "\u2066", "\u2069", "\ufeff"]
EMOJI = ["👍🏽", "👨\u200d👩\u200d👧", "🇩🇪", "❤\ufe0f", "1\ufe0f\u20e3", "🏳\ufe0f\u200d🌈"]
ACCENTS = st.one_of(
    chars(0xC0, 0x17F).filter(str.isalpha),  # composed: é, ß, ő, ſ ...
    st.tuples(st.sampled_from(string.ascii_letters), runs(chars(0x300, 0x36F), 1, 2)).map(
        "".join
    ),  # decomposed: e + U+0301 ...
)
KINDS = {
    "words": runs(st.sampled_from(string.ascii_letters + string.digits), 1, 8),
    "punctuation_runs": runs(st.sampled_from(PUNCTUATION), 2, 6),
    "repeated_spaces": st.one_of(
        st.integers(2, 6).map(" ".__mul__),
        runs(st.sampled_from([" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009"]), 2, 5),
    ),
    "accents": runs(ACCENTS, 1, 4),
    "cjk": runs(st.one_of(chars(0x4E00, 0x9FFF), chars(0x3041, 0x30FF), chars(0xAC00, 0xD7A3))),
    "emoji": st.one_of(runs(chars(0x1F300, 0x1F64F), 1, 3), st.sampled_from(EMOJI)),
    "right_to_left": runs(
        st.one_of(chars(0x5D0, 0x5EA), chars(0x621, 0x64A), st.just("\u200f")), 1, 6
    ),
    "controls": runs(st.sampled_from(CONTROLS + FORMATS), 1, 3),
}
# SentencePiece's own spellings: its space symbol, byte pieces, unknown surface.
SENTENCEPIECE_SPELLINGS = st.sampled_from(
    ["▁", "▁▁", " ▁ ", "<0x41>", " ⁇ ", "[MASK]", "[SEP]", "[UNK]", "[PAD]"]
)


@st.composite
def mixed_text(draw, kinds, extra=()):
    """Text made of one piece of every kind in `kinds` plus up to six more
    pieces of any kind (or of `extra` strategies), in random order."""
    any_kind = st.one_of(*kinds.values(), *extra)
    pieces = [draw(kind) for kind in kinds.values()]
    pieces += draw(st.lists(any_kind, max_size=6))
    return "".join(draw(st.permutations(pieces)))


LOSSLESS_TEXT = mixed_text(KINDS, extra=(SENTENCEPIECE_SPELLINGS, st.text(max_size=6)))

# Mixed-script training text, repeated so that pieces pass the learners'
# frequency thresholds.
CORPUS = [
    "The quick brown fox jumps over the lazy dog, again and again.",
    "Save the file (Ctrl+S) -- then close it!",
    "Datei speichern (Strg+S); Größe: 12,5 MB.",
    "Le café est très bon... l'été aussi ?",
    "东京是日本的首都。ひらがなとカタカナ。한국어 문장.",
    "שלום עולם. مرحبا بالعالم.",
    "emoji 😀 and 🎉, \"quotes\" and [brackets] {braces} <angles>",
    "    indented = code(line)  # comment\twith tab",
] * 12


@pytest.fixture(scope="module")
def sentence_pieces():
    return [
        SentencePieceTokenizer.train(CORPUS, vocabulary_size=400, model_type=model_type)
        for model_type in ("unigram", "bpe")
    ]


def round_trip(tokenizer, text):
    return tokenizer.detokenize(tokenizer.tokenize([text])).numpy()[0].decode("utf-8")


# ---------------------------------------------------------------- lossless


def check_sentence_piece_round_trip(tokenizers, text):
    for tokenizer in tokenizers:
        ids = tokenizer.tokenize([text])
        assert tokenizer.unk_id not in ids.flat_values.numpy()
        assert tokenizer.detokenize(ids).numpy()[0].decode("utf-8") == text


@DEFAULT
@given(text=LOSSLESS_TEXT)
def test_sentence_piece_round_trip_is_exact(sentence_pieces, text):
    check_sentence_piece_round_trip(sentence_pieces, text)


@pytest.mark.slow
@SLOW
@given(text=LOSSLESS_TEXT)
def test_sentence_piece_round_trip_is_exact_many(sentence_pieces, text):
    check_sentence_piece_round_trip(sentence_pieces, text)


@DEFAULT
@given(texts=st.lists(LOSSLESS_TEXT, min_size=1, max_size=4))
def test_sentence_piece_batches_round_trip_row_by_row(sentence_pieces, texts):
    for tokenizer in sentence_pieces:
        batch = tokenizer.tokenize(texts)
        assert batch.to_list() == [tokenizer.tokenize(text).numpy().tolist() for text in texts]
        assert [t.decode("utf-8") for t in tokenizer.detokenize(batch).numpy()] == texts


BYTES = ByteTokenizer()  # one instance: its graphs are traced once


@DEFAULT
@given(text=LOSSLESS_TEXT)
def test_byte_round_trip_is_exact(text):
    assert round_trip(BYTES, text) == text


@pytest.mark.slow
@SLOW
@given(text=LOSSLESS_TEXT)
def test_byte_round_trip_is_exact_many(text):
    assert round_trip(BYTES, text) == text


@settings(max_examples=50, deadline=None)
@given(text=LOSSLESS_TEXT)
def test_generated_text_holds_every_kind(text):
    categories = {unicodedata.category(character) for character in text}
    assert any(character in PUNCTUATION for character in text)
    assert any(space in text for space in (" ", "\t", "\n", "\u00a0", "\u3000", "\u2009"))
    assert any(ord(c) >= 0xC0 and c.isalpha() for c in text) or "Mn" in categories
    assert any(0x3041 <= ord(c) <= 0xD7A3 for c in text)
    assert any(ord(c) >= 0x1F1E6 for c in text) or any(e in text for e in EMOJI)
    assert any(0x5D0 <= ord(c) <= 0x64A or c == "\u200f" for c in text)
    assert categories & {"Cc", "Cf"}


# ---------------------------------------------------------------- WordPiece

# What WordPieceTokenizer's docstring states, written out in Python.
_ASCII_WHITESPACE = " \t\n\r\f"
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_MAX_WORD_BYTES = 100


def _separates(character):
    return character in _ASCII_WHITESPACE or unicodedata.category(character) in ("Cc", "Cf")


def _stands_alone(character):
    code = ord(character)
    ascii_symbol = 0x21 <= code <= 0x7E and not character.isalnum()
    return (
        ascii_symbol
        or unicodedata.category(character).startswith("P")
        or any(low <= code <= high for low, high in _CJK_RANGES)
    )


# Unicode's Default_Ignorable_Code_Point ranges, which NFKC_Casefold drops.
_DEFAULT_IGNORABLE = ((0xAD, 0xAD), (0x34F, 0x34F), (0x61C, 0x61C), (0x115F, 0x1160),
                      (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
                      (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
                      (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
                      (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))


def _nfkc_casefold(word):
    # Unicode's NFKC_Casefold: NFKC(casefold(NFKC(word))) without default ignorables.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", word).casefold())
    return "".join(
        c for c in folded
        if not any(low <= ord(c) <= high for low, high in _DEFAULT_IGNORABLE)
    )


def word_piece_normalise(text, alphabet, lowercase=True, strip_accents=False):
    """`detokenize(tokenize(text))` as the WordPieceTokenizer docstring states it."""
    if strip_accents:
        text = "".join(
            c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
        )
    words, word = [], ""
    for character in text:
        if _separates(character) or _stands_alone(character):
            words.append(word)
            word = ""
            if _stands_alone(character):
                words.append(character)
        else:
            word += character
    words = [word for word in words + [word] if word]
    if lowercase:
        words = [_nfkc_casefold(word) for word in words]
    return " ".join(
        word if set(word) <= alphabet and len(word.encode("utf-8")) <= _MAX_WORD_BYTES
        else "[UNK]"
        for word in words
    )


# Generated text WordPiece's statement covers: the kinds above, with only
# ASCII whitespace separating words (other spaces are word characters, which
# NFKC turns into a space inside the word) and no variation selectors.
WORD_PIECE_KINDS = {
    **KINDS,
    "repeated_spaces": runs(st.sampled_from(list(_ASCII_WHITESPACE)), 2, 5),
    "emoji": runs(chars(0x1F300, 0x1F64F), 1, 3),
}
WORD_PIECE_TEXT = mixed_text(WORD_PIECE_KINDS)


@pytest.fixture(scope="module", params=[(True, False), (False, True)], ids=["lowercase",
                                                                             "strip_accents"])
def word_piece(request):
    lowercase, strip_accents = request.param
    tokenizer = WordPieceTokenizer.train(
        CORPUS, vocabulary_size=400, lowercase=lowercase, strip_accents=strip_accents
    )
    alphabet = {token for token in tokenizer.get_vocabulary()[7:] if len(token) == 1}
    return tokenizer, alphabet, lowercase, strip_accents


def check_word_piece_normalisation(word_piece, text):
    tokenizer, alphabet, lowercase, strip_accents = word_piece
    expected = word_piece_normalise(text, alphabet, lowercase, strip_accents)
    assert round_trip(tokenizer, text) == expected


@DEFAULT
@given(text=WORD_PIECE_TEXT)
def test_word_piece_round_trip_is_its_documented_normalisation(word_piece, text):
    check_word_piece_normalisation(word_piece, text)


@pytest.mark.slow
@SLOW
@given(text=WORD_PIECE_TEXT)
def test_word_piece_round_trip_is_its_documented_normalisation_many(word_piece, text):
    check_word_piece_normalisation(word_piece, text)


def test_word_piece_normalisation_examples(word_piece):
    tokenizer, alphabet, lowercase, _ = word_piece
    text = "The  café,\tsaid  (Ctrl+S)...东京\u200bok"
    expected = ("the café , said ( ctrl + s ) . . . 东 京 ok" if lowercase
                else "The cafe , said ( Ctrl + S ) . . . 东 京 ok")
    assert word_piece_normalise(text, alphabet, *word_piece[2:]) == expected
    assert round_trip(tokenizer, text) == expected


@pytest.mark.parametrize(
    "text, lowercased, accents_stripped",
    [
        # NUL separates words (tf_text's splitting alone would end the text).
        ("a\x00b c", "a b c", "a b c"),
        # A no-break space is a word character.
        ("ok a\u00a0b ok", "ok [UNK] ok", "ok [UNK] ok"),
        # NFKC_Casefold with lowercase; "ﬁ" is never seen in training.
        ("Straße ﬁx", "strasse fix", "Straße [UNK]"),
    ],
)
def test_word_piece_normalisation_edge_cases(word_piece, text, lowercased, accents_stripped):
    tokenizer, alphabet, lowercase, strip_accents = word_piece
    expected = lowercased if lowercase else accents_stripped
    assert word_piece_normalise(text, alphabet, lowercase, strip_accents) == expected
    assert round_trip(tokenizer, text) == expected
