"""Your own data from text files: translation pairs, labelled texts, plain
text.

Files are UTF-8 (a leading byte order mark is ignored) with `\\n`, `\\r\\n` or
`\\r` line ends. Delimited files are parsed with the `csv` module: with
`quoted=True` (the default for comma- and semicolon-separated files) a field
in double quotes may hold the delimiter, line breaks and doubled quotes
(`"He said ""hi"", then left"`); tab-separated files are read without quoting
by default (the TSV convention, so a sentence starting with `"` is kept as
is). Fields are stripped of surrounding whitespace; blank lines are ignored.

A malformed row (wrong number of fields, an empty field, invalid UTF-8, bad
CSV quoting, an unknown label) raises a `ValueError` naming the file and the
row's 1-based line number. With `skip_malformed=True` such rows are skipped
instead: the result's `skipped` counts them and its `report` (a
`LoadReport`) lists the first few problems.

Example:

>>> with open("pairs.tsv", "w", encoding="utf-8") as f:
...     _ = f.write("twenty one\\t21\\nseven\\t7\\n")  # "source<TAB>target" per line
>>> data = read_translation_pairs("pairs.tsv")
>>> data.sources, data.targets
(['twenty one', 'seven'], ['21', '7'])
>>> with open("reviews.csv", "w", encoding="utf-8") as f:
...     _ = f.write('review,sentiment\\nloved it,positive\\n"dull, too long",negative\\n'
...                 'bad,meh,negative\\n')
>>> data = read_classification("reviews.csv", header=True, label_column="sentiment",
...                            text_column="review", skip_malformed=True)
>>> data.texts, data.labels, data.label_names
(['loved it', 'dull, too long'], [1, 0], ['negative', 'positive'])
>>> print(data.report)
reviews.csv: 3 rows read, 1 skipped:
  reviews.csv, line 4: expected 2 fields separated by comma, found 3
>>> with open("book.txt", "w", encoding="utf-8") as f:
...     _ = f.write("Call me Ishmael.\\nSome years ago.\\n\\nIt was a dark night.\\n")
>>> read_text("book.txt", unit="paragraph").texts
['Call me Ishmael.\\nSome years ago.', 'It was a dark night.']
"""

import codecs
import csv
import os
import re

from keras_attn.data.examples import ClassificationData, LoadReport, TextData, TranslationData
from keras_attn.utils.arguments import check_choice, check_positive_int

_DELIMITERS_BY_EXTENSION = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_INTEGER = re.compile(r"[0-9]+")


def _check_file(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"`path` must be an existing file. Received: path={path!r}")
    if not os.path.isfile(path):
        raise IsADirectoryError(f"`path` must be a file, not a directory. Received: path={path!r}")
    return path


def _decoded_lines(path):
    """The file's physical lines (with their line ends) and `{line: problem}`
    for lines that are not valid UTF-8 (decoded with replacement chars)."""
    with open(path, "rb") as file:
        raw = file.read()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    lines, bad = [], {}
    # bytes.splitlines breaks only at \n, \r\n and \r (str.splitlines would
    # also break at form feeds and Unicode separators inside a text).
    for number, line in enumerate(raw.splitlines(keepends=True), 1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError as error:
            bad[number] = f"invalid UTF-8 (byte {error.start + 1} of the line)"
            lines.append(line.decode("utf-8", "replace"))
    return lines, bad


class _Rows:
    """Collects good rows and problems; raises on the first problem unless
    skipping."""

    def __init__(self, path, skip_malformed):
        self.path = path
        self.skip_malformed = skip_malformed
        self.report = LoadReport(path)

    def problem(self, line, what):
        if not self.skip_malformed:
            raise ValueError(
                f"Malformed row in {self.path}, line {line}: {what}. Fix it, or pass "
                "skip_malformed=True to skip such rows."
            )
        self.report.add_problem(f"{self.path}, line {line}: {what}")


def _records(path, delimiter, quoted):
    """`(line, fields, problem)` for each non-blank record: `fields` stripped
    (None when the record is malformed), `problem` what was wrong (or None)."""
    lines, bad = _decoded_lines(path)
    consumed = 0

    def feed():
        nonlocal consumed
        for line in lines:
            consumed += 1
            yield line

    reader = csv.reader(
        feed(),
        delimiter=delimiter,
        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
        strict=True,
    )
    while True:
        start = consumed + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, None, f"bad CSV quoting ({error})"
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # a blank line
        bad_lines = [n for n in range(start, consumed + 1) if n in bad]
        if bad_lines:
            yield bad_lines[0], None, bad[bad_lines[0]]
        else:
            yield start, [field.strip() for field in fields], None


def _column_index(argument, column, header):
    if isinstance(column, str):
        if header is None:
            raise ValueError(
                f"`{argument}` may be a column name only with header=True. "
                f"Received: {argument}={column!r}"
            )
        if column not in header:
            raise ValueError(
                f"`{argument}` must be one of the header's columns {header}. "
                f"Received: {argument}={column!r}"
            )
        return header.index(column)
    if isinstance(column, bool) or not isinstance(column, int) or column < 0:
        raise ValueError(
            f"`{argument}` must be a 0-based column index or a header name. "
            f"Received: {argument}={column!r}"
        )
    return column


def _delimited_rows(path, delimiter, header, quoted, columns, num_columns, rows):
    """`(line, [field of each of columns])` of every well-formed record.

    `columns` maps names used in messages ("source", "label", ...) to column
    indices or header names.
    """
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(
            f"`delimiter` must be a one-character string. Received: delimiter={delimiter!r}"
        )
    if quoted is None:
        quoted = delimiter != "\t"
    records = _records(path, delimiter, quoted)
    header_fields = None
    if header:
        first = next(records, None)
        if first is None:
            return
        line, header_fields, problem = first
        if problem:  # without the header the columns are unknown: never skipped
            raise ValueError(f"Malformed header in {path}, line {line}: {problem}")
    indices = {
        name: _column_index(f"{name}_column", column, header_fields)
        for name, column in columns.items()
    }
    if num_columns is None:
        num_columns = len(header_fields) if header_fields else max(indices.values()) + 1
    num_columns = check_positive_int("num_columns", num_columns)
    if max(indices.values()) >= num_columns:
        raise ValueError(
            f"`num_columns` must exceed every column index {indices}. "
            f"Received: num_columns={num_columns}"
        )
    shown = {"\t": "tab", ",": "comma", ";": "semicolon"}.get(delimiter, repr(delimiter))
    for line, fields, problem in records:
        rows.report.rows += 1
        if problem:
            rows.problem(line, problem)
            continue
        if len(fields) != num_columns:
            rows.problem(
                line,
                f"expected {num_columns} fields separated by {shown}, found {len(fields)}",
            )
            continue
        values = [fields[index] for index in indices.values()]
        empty = [name for name, value in zip(indices, values) if not value]
        if empty:
            rows.problem(line, f"empty {empty[0]} (column {indices[empty[0]] + 1})")
            continue
        yield line, values


def read_translation_pairs(
    path,
    delimiter="\t",
    header=False,
    skip_malformed=False,
    source_column=0,
    target_column=1,
    num_columns=None,
    quoted=None,
):
    """Reads `source<delimiter>target` rows into `TranslationData`.

    Args:
        path: the file.
        delimiter: the field separator (default: tab).
        header: the first row names the columns (and is not data).
        skip_malformed: skip bad rows instead of raising (see the module
            docstring); the result's `report` lists them.
        source_column, target_column: 0-based indices, or header names.
        num_columns: fields every row must have (default: the header's
            count, else `max(source_column, target_column) + 1`). Set it for
            files with extra columns, e.g. 3 for Tatoeba / Anki exports
            (`source<TAB>target<TAB>attribution`).
        quoted: whether fields may be double-quoted (default: True unless
            the delimiter is a tab).

    Returns:
        `TranslationData(sources, targets)` with a `LoadReport`.

    Example:
    >>> with open("anki.txt", "w", encoding="utf-8") as f:
    ...     _ = f.write("Hi.\\tSalut.\\tCC-BY\\nRun!\\tCours !\\tCC-BY\\n")
    >>> data = read_translation_pairs("anki.txt", num_columns=3)
    >>> data.sources, data.targets, data.report.rows
    (['Hi.', 'Run!'], ['Salut.', 'Cours !'], 2)
    """
    path = _check_file(path)
    rows = _Rows(path, skip_malformed)
    sources, targets = [], []
    columns = {"source": source_column, "target": target_column}
    for _, (source, target) in _delimited_rows(
        path, delimiter, header, quoted, columns, num_columns, rows
    ):
        sources.append(source)
        targets.append(target)
    return TranslationData(sources, targets, report=rows.report)


def _infer_delimiter(path):
    extension = os.path.splitext(path)[1].lower()
    if extension not in _DELIMITERS_BY_EXTENSION:
        raise ValueError(
            "`delimiter` must be given for a file that does not end in "
            f"{', '.join(_DELIMITERS_BY_EXTENSION)}. Received: delimiter=None for {path!r}"
        )
    return _DELIMITERS_BY_EXTENSION[extension]


def read_classification(
    path,
    delimiter=None,
    header=False,
    label_column=0,
    text_column=1,
    skip_malformed=False,
    label_names=None,
    num_columns=None,
    quoted=None,
):
    """Reads `label<delimiter>text` rows into `ClassificationData`.

    Labels in the file may be names or non-negative integers:

    - with `label_names`, a label is one of the names (its index) or an
      integer in `[0, len(label_names))`; anything else is an unknown label
      (a malformed row);
    - without, if every label is a non-negative integer the labels are those
      integers and `label_names` are `"0"`, `"1"`, ... up to the largest;
      otherwise each distinct label is a name, numbered in sorted order
      (`["neg", "pos"]` -> 0, 1).

    Args:
        path: the file.
        delimiter: the field separator; default: `,` for `.csv`, tab for
            `.tsv` / `.tab`.
        header: the first row names the columns (and is not data).
        label_column, text_column: 0-based indices, or header names.
        skip_malformed: skip bad rows instead of raising.
        label_names: the class names, in id order (optional).
        num_columns: fields every row must have (default: the header's
            count, else `max(label_column, text_column) + 1`).
        quoted: whether fields may be double-quoted (default: True unless
            the delimiter is a tab).

    Returns:
        `ClassificationData(texts, labels, label_names)` with a `LoadReport`.

    Example:
    >>> with open("labelled.tsv", "w", encoding="utf-8") as f:
    ...     _ = f.write("pos\\tgreat fun\\nneg\\tboring\\nneutral\\tok\\n")
    >>> data = read_classification("labelled.tsv", label_names=["neg", "pos"],
    ...                            skip_malformed=True)
    >>> data.texts, data.labels, data.skipped
    (['great fun', 'boring'], [1, 0], 1)
    """
    path = _check_file(path)
    if delimiter is None:
        delimiter = _infer_delimiter(path)
    if label_names is not None:
        label_names = [str(name) for name in label_names]
        if not label_names or len(set(label_names)) != len(label_names):
            raise ValueError(
                "`label_names` must be a non-empty list of distinct names. "
                f"Received: label_names={label_names!r}"
            )
    rows = _Rows(path, skip_malformed)
    columns = {"label": label_column, "text": text_column}
    parsed = list(_delimited_rows(path, delimiter, header, quoted, columns, num_columns, rows))

    if label_names is None:
        raw_labels = [label for _, (label, _) in parsed]
        if all(_INTEGER.fullmatch(label) for label in raw_labels):
            ids = {label: int(label) for label in raw_labels}
            label_names = [str(i) for i in range(max(ids.values(), default=-1) + 1)]
        else:
            label_names = sorted(set(raw_labels))
            ids = {label: i for i, label in enumerate(label_names)}
    else:
        ids = {name: i for i, name in enumerate(label_names)}
        ids.update(
            {str(i): i for i in range(len(label_names)) if str(i) not in ids}
        )
    texts, labels = [], []
    for line, (label, text) in parsed:
        if label not in ids:
            rows.problem(line, f"unknown label {label!r} (label_names: {label_names})")
            continue
        texts.append(text)
        labels.append(ids[label])
    return ClassificationData(texts, labels, label_names, report=rows.report)


def read_text(path, unit="line", skip_empty=True, skip_malformed=False):
    """Reads a text file into `TextData`, one text per line or per paragraph.

    Args:
        path: the file.
        unit: "line" (each line, without its line end) or "paragraph" (runs
            of non-blank lines separated by blank lines, joined with `\\n`).
        skip_empty: with unit="line", leave out blank (whitespace-only)
            lines. Paragraphs are never empty.
        skip_malformed: skip lines (or paragraphs) that are not valid UTF-8
            instead of raising.

    Returns:
        `TextData(texts)` with a `LoadReport`.

    Example:
    >>> with open("lines.txt", "w", encoding="utf-8") as f:
    ...     _ = f.write("first line\\n\\n  \\nsecond line\\n")
    >>> read_text("lines.txt").texts
    ['first line', 'second line']
    """
    path = _check_file(path)
    check_choice("unit", unit, ("line", "paragraph"))
    rows = _Rows(path, skip_malformed)
    lines, bad = _decoded_lines(path)
    texts = []
    if unit == "line":
        for number, line in enumerate(lines, 1):
            line = line.rstrip("\r\n")
            if skip_empty and not line.strip():
                continue
            rows.report.rows += 1
            if number in bad:
                rows.problem(number, bad[number])
                continue
            texts.append(line)
        return TextData(texts, report=rows.report)

    paragraph, first_line = [], None

    def finish():
        if not paragraph:
            return
        rows.report.rows += 1
        bad_lines = [n for n in range(first_line, first_line + len(paragraph)) if n in bad]
        if bad_lines:
            rows.problem(bad_lines[0], bad[bad_lines[0]])
        else:
            texts.append("\n".join(paragraph))

    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if line.strip():
            if not paragraph:
                first_line = number
            paragraph.append(line)
        else:
            finish()
            paragraph.clear()
    finish()
    return TextData(texts, report=rows.report)
