import codecs

import pytest

from keras_attn.data import (
    ClassificationData,
    LoadReport,
    TextData,
    TranslationData,
    load_builtin,
    load_dataset,
    read_classification,
    read_text,
    read_translation_pairs,
)


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


# ------------------------------------------------------------------ good files


def test_translation_pairs_with_header_bom_crlf_and_blank_lines(tmp_path):
    content = "source\ttarget\r\n  hello \tbonjour\r\n\r\nthank you\tmerci\r\nété\tsummer\r\n"
    path = _write(tmp_path, "pairs.tsv", codecs.BOM_UTF8 + content.encode("utf-8"))
    data = read_translation_pairs(path, header=True)
    assert isinstance(data, TranslationData) and len(data) == 3
    assert data.sources == ["hello", "thank you", "été"]
    assert data.targets == ["bonjour", "merci", "summer"]
    assert data.skipped == 0 and data.report.rows == 3


def test_translation_pairs_tsv_keeps_quotes_and_extra_columns(tmp_path):
    # Tatoeba / Anki exports: a third attribution column, raw quotes in text.
    path = _write(tmp_path, "fra.txt", '"Hi," he said.\t« Salut », dit-il.\tCC-BY #1\n'
                                       "Run!\tCours !\tCC-BY #2\n")
    data = read_translation_pairs(path, num_columns=3)
    assert data.sources == ['"Hi," he said.', "Run!"]
    assert data.targets == ["« Salut », dit-il.", "Cours !"]
    with pytest.raises(ValueError, match="line 1: expected 2 fields separated by tab, found 3"):
        read_translation_pairs(path)


def test_classification_csv_with_quotes_commas_and_named_columns(tmp_path):
    content = (
        "id,review,sentiment\n"
        '1,"Great, really great.",pos\n'
        '2,"He said ""meh""\nand left",neg\n'
        "3,Fine,pos\n"
    )
    path = _write(tmp_path, "reviews.csv", content)
    data = read_classification(path, header=True, label_column="sentiment",
                               text_column="review")
    assert isinstance(data, ClassificationData)
    assert data.texts == ["Great, really great.", 'He said "meh"\nand left', "Fine"]
    assert data.label_names == ["neg", "pos"]  # sorted names
    assert data.labels == [1, 0, 1]


def test_classification_integer_labels_and_given_label_names(tmp_path):
    path = _write(tmp_path, "labels.tsv", "2\tc text\n0\ta text\n1\tb text\n")
    data = read_classification(path)  # tab inferred from .tsv
    assert data.labels == [2, 0, 1] and data.label_names == ["0", "1", "2"]
    named = _write(tmp_path, "named.csv", "positive,good\n0,bad\nnegative,awful\n")
    data = read_classification(named, label_names=["negative", "positive"])
    assert data.labels == [1, 0, 0] and data.label_names == ["negative", "positive"]


def test_read_text_lines_and_paragraphs(tmp_path):
    path = _write(tmp_path, "book.txt", "Line one\r\n\n  indented\nlast\n\n\nNew para\n")
    assert read_text(path).texts == ["Line one", "  indented", "last", "New para"]
    assert read_text(path, skip_empty=False).texts == [
        "Line one", "", "  indented", "last", "", "", "New para"
    ]
    data = read_text(path, unit="paragraph")
    assert isinstance(data, TextData)
    assert data.texts == ["Line one", "  indented\nlast", "New para"]


# ------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "content, line, what",
    [
        ("a\tb\nc\nd\te\n", 2, "expected 2 fields separated by tab, found 1"),
        ("a\tb\nc\td\te\n", 2, "found 3"),
        ("a\tb\n\n\n \tz\n", 4, "empty source"),
        ("a\tb\nc\t\n", 2, "empty target"),
        (b"a\tb\nc\t\xffd\n", 2, "invalid UTF-8"),
    ],
)
def test_malformed_pairs_name_file_and_line(tmp_path, content, line, what):
    path = _write(tmp_path, "bad.tsv", content)
    with pytest.raises(ValueError) as error:
        read_translation_pairs(path)
    message = str(error.value)
    assert path in message and f"line {line}:" in message and what in message


def test_malformed_csv_counts_physical_lines(tmp_path):
    # The quoted text spans lines 1-2, so the broken row is on line 4.
    content = 'pos,"two\nlines"\nneg,ok\npos,"x"y\nneg,fine\n'
    path = _write(tmp_path, "bad.csv", content)
    with pytest.raises(ValueError, match=r"bad\.csv, line 4: bad CSV quoting"):
        read_classification(path)
    data = read_classification(path, skip_malformed=True)  # parsing goes on after the error
    assert data.texts == ["two\nlines", "ok", "fine"] and data.skipped == 1
    unknown = _write(tmp_path, "unknown.csv", 'pos,"a\nb"\nmaybe,c\n')
    with pytest.raises(ValueError, match=r"unknown\.csv, line 3: unknown label 'maybe'"):
        read_classification(unknown, label_names=["neg", "pos"])


def test_skip_malformed_counts_and_reports(tmp_path):
    content = b"a\tb\nc\nd\te\tf\n\xfe\tx\ng\th\n\ti\n"
    path = _write(tmp_path, "mixed.tsv", content)
    data = read_translation_pairs(path, skip_malformed=True)
    assert data.sources == ["a", "g"] and data.targets == ["b", "h"]
    assert data.skipped == 4
    report = data.report
    assert isinstance(report, LoadReport) and report.rows == 6
    assert [p.split(": ")[0] for p in report.problems] == [
        f"{path}, line {n}" for n in (2, 3, 4, 6)
    ]
    assert "4 skipped" in str(report) and "invalid UTF-8" in str(report)
    labels = _write(tmp_path, "labels.csv", "pos,a\nhuh,b\nneg,c\n")
    data = read_classification(labels, label_names=["neg", "pos"], skip_malformed=True)
    assert data.labels == [1, 0] and data.skipped == 1


def test_read_text_invalid_utf8(tmp_path):
    path = _write(tmp_path, "bad.txt", b"good\n\nbad \xc3\x28 byte\nstill bad para\n\nok\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 3: invalid UTF-8 \(byte 5"):
        read_text(path)
    assert read_text(path, skip_malformed=True).texts == ["good", "still bad para", "ok"]
    data = read_text(path, unit="paragraph", skip_malformed=True)
    assert data.texts == ["good", "ok"] and data.skipped == 1 and data.report.rows == 3


def test_missing_file_and_bad_arguments(tmp_path):
    missing = str(tmp_path / "nope.tsv")
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_translation_pairs(missing)
    path = _write(tmp_path, "data.txt", "a,b\n")
    with pytest.raises(ValueError, match="`delimiter`.*data.txt"):
        read_classification(path)
    with pytest.raises(ValueError, match="`label_column`.*header=True"):
        read_classification(path, delimiter=",", label_column="label")
    with pytest.raises(ValueError, match="`unit`"):
        read_text(path, unit="sentence")
    with pytest.raises(ValueError, match="Malformed header.*line 1"):
        read_classification(_write(tmp_path, "h.csv", b"\xff,x\na,b\n"), header=True)


# ---------------------------------------------------------------- load_dataset


def test_load_dataset_dispatches_files_and_builtins(tmp_path):
    _write(tmp_path, "pairs.tsv", "a\tb\nc\td\ne\tf\n")
    spec = {"source": "files", "task": "translation", "path": "pairs.tsv", "num_examples": 2}
    data = load_dataset(spec, base_dir=str(tmp_path))
    assert data.sources == ["a", "c"] and data.report.rows == 3
    _write(tmp_path, "t.txt", "x\ny\n")
    text = load_dataset({"source": "files", "path": str(tmp_path / "t.txt")}, task="generation")
    assert text.texts == ["x", "y"]
    built = load_dataset({"source": "builtin", "name": "dates", "split": "test",
                          "num_examples": 5, "seed": 2})
    assert built == load_builtin("dates", "test", 5, seed=2)


@pytest.mark.parametrize(
    "spec, task, match",
    [
        ({"source": "builtin", "name": "dates", "path": "x"}, None,
         r"Unknown keys \['path'\].*Allowed keys: \['name', 'num_examples', 'seed', "),
        ({"source": "files", "task": "generation", "path": "x", "delimiter": ","}, None,
         r"Unknown keys \['delimiter'\].*'skip_empty'"),
        ({"source": "files", "path": "x"}, None, "`task` must be given"),
        ({"source": "builtin", "name": "dates"}, "generation", "translation dataset"),
        ({"source": "files", "task": "translation", "path": "x"}, "generation", "must agree"),
        ({"source": "web", "name": "x"}, None, "`source`"),
        ({"name": "dates"}, None, "'source'"),
        ({"source": "builtin"}, None, "'name'"),
        ({"source": "files", "task": "translation"}, None, "'path'"),
        ({"source": "builtin", "name": "dates", "num_examples": 0}, None, "`num_examples`"),
        ("dates", None, "`spec` must be a dict"),
    ],
)
def test_load_dataset_rejects_bad_specs(spec, task, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(spec, task=task)
