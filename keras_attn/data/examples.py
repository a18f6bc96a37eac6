"""The plain-Python containers every loader in `keras_attn.data` returns.

They hold lists of strings (and integer labels), exactly what the models'
`make_dataset` takes:

```python
data = load_builtin("dates")                         # TranslationData
translator.make_dataset(data.sources, data.targets)
data = read_classification("reviews.csv", header=True)  # ClassificationData
classifier.make_dataset(data.texts, data.labels)
data = load_builtin("sorted_letters")                # TextData
generator.make_dataset(data.texts)
```

Loaders that can skip bad input (`skip_malformed=True`) attach a `LoadReport`
saying how many rows were skipped and why.
"""

import dataclasses

MAX_REPORTED_PROBLEMS = 10


@dataclasses.dataclass
class LoadReport:
    """What a loader skipped.

    Attributes:
        path: the file read (or the dataset's name).
        rows: rows (records) read, good and bad.
        skipped: rows skipped as malformed.
        problems: `"path:line: what was wrong"` for the first
            `MAX_REPORTED_PROBLEMS` skipped rows.

    Example:
    >>> report = LoadReport("pairs.tsv", rows=3)
    >>> report.add_problem("pairs.tsv, line 2: empty target (column 2)")
    >>> print(report)
    pairs.tsv: 3 rows read, 1 skipped:
      pairs.tsv, line 2: empty target (column 2)
    """

    path: str
    rows: int = 0
    skipped: int = 0
    problems: list = dataclasses.field(default_factory=list)

    def add_problem(self, message):
        """Counts one skipped row; keeps its message while there is room."""
        self.skipped += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(message)

    def __str__(self):
        summary = f"{self.path}: {self.rows} rows read, {self.skipped} skipped"
        if not self.problems:
            return summary
        more = self.skipped - len(self.problems)
        lines = [summary + ":"] + [f"  {p}" for p in self.problems]
        if more:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)


class _Examples:
    """Shared `skipped` / `take` behaviour of the containers."""

    @property
    def skipped(self):
        """Rows skipped as malformed while loading (0 without a report)."""
        return self.report.skipped if self.report is not None else 0

    def take(self, num_examples):
        """The first `num_examples` examples (all if there are fewer)."""
        if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 0:
            raise ValueError(
                "`num_examples` must be a non-negative integer. "
                f"Received: num_examples={num_examples!r}"
            )
        lists = {
            field.name: getattr(self, field.name)[:num_examples]
            for field in dataclasses.fields(self)
            if field.name in self._example_fields
        }
        return dataclasses.replace(self, **lists)


@dataclasses.dataclass
class TranslationData(_Examples):
    """Parallel texts: `sources[i]` translates to `targets[i]`.

    Attributes:
        sources, targets: lists of strings of the same length.
        report: the loader's `LoadReport`, or None.

    Example:
    >>> data = TranslationData(["one", "two", "three"], ["1", "2", "3"])
    >>> len(data), data.take(2).targets, data.skipped
    (3, ['1', '2'], 0)
    """

    sources: list
    targets: list
    report: LoadReport | None = None

    _example_fields = ("sources", "targets")

    def __post_init__(self):
        if len(self.sources) != len(self.targets):
            raise ValueError(
                "`sources` and `targets` must have the same length. Received: "
                f"{len(self.sources)} sources and {len(self.targets)} targets"
            )

    def __len__(self):
        return len(self.sources)


@dataclasses.dataclass
class ClassificationData(_Examples):
    """Texts and integer labels; `label_names[labels[i]]` names the class.

    Attributes:
        texts: list of strings.
        labels: ints in `[0, len(label_names))`, one per text.
        label_names: the class names, in id order (`num_classes` of them).
        report: the loader's `LoadReport`, or None.

    Example:
    >>> data = ClassificationData(["great", "awful"], [1, 0], ["neg", "pos"])
    >>> data.num_classes, [data.label_names[label] for label in data.labels]
    (2, ['pos', 'neg'])
    """

    texts: list
    labels: list
    label_names: list
    report: LoadReport | None = None

    _example_fields = ("texts", "labels")

    def __post_init__(self):
        if len(self.texts) != len(self.labels):
            raise ValueError(
                "`texts` and `labels` must have the same length. Received: "
                f"{len(self.texts)} texts and {len(self.labels)} labels"
            )
        outside = [label for label in self.labels if not 0 <= label < len(self.label_names)]
        if outside:
            raise ValueError(
                f"`labels` must be in [0, {len(self.label_names)}) for "
                f"label_names={self.label_names}. Received: {sorted(set(outside))[:5]}"
            )

    @property
    def num_classes(self):
        return len(self.label_names)

    def __len__(self):
        return len(self.texts)


@dataclasses.dataclass
class TextData(_Examples):
    """Texts for language modelling / generation.

    Attributes:
        texts: list of strings.
        report: the loader's `LoadReport`, or None.

    Example:
    >>> data = TextData(["abc", "abcd", "ab"])
    >>> len(data), data.take(1).texts
    (3, ['abc'])
    """

    texts: list
    report: LoadReport | None = None

    _example_fields = ("texts",)

    def __len__(self):
        return len(self.texts)
