"""Datasets from the TensorFlow Datasets catalog, as plain Python lists.

Each loader calls `tfds.load`, decodes the byte strings to `str` and returns
`TranslationData`, `ClassificationData` or `TextData`.

Nothing is downloaded unless asked: with the default `download=False` a
dataset must already be prepared in `data_dir` (default: `~/tensorflow_datasets`
or `$TFDS_DATA_DIR`). Prepare it once on a machine with internet, e.g.
`load_tfds_text(download=True)` or `tfds build tiny_shakespeare`, and copy the
directory. A missing dataset raises a one-line `OSError` saying so; an unknown
name a `ValueError`.

`split` is any TFDS split string: `"train"`, `"test[:10%]"`, `"train+validation"`.

Example:

```python
from keras_attn.data import load_tfds_translation

data = load_tfds_translation("ted_hrlr_translate/pt_to_en", split="validation",
                             download=True, max_examples=1000)
translator.make_dataset(data.sources, data.targets)
```
"""

from keras_attn.data.examples import ClassificationData, TextData, TranslationData
from keras_attn.utils.arguments import check_positive_int


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _load(name, split, data_dir, download, max_examples):
    """`(examples as numpy dicts, info)` of a TFDS dataset, errors made readable."""
    # Imported here: tensorflow-datasets is only needed when its data is.
    import tensorflow_datasets as tfds

    max_examples = check_positive_int("max_examples", max_examples, allow_none=True)
    where = data_dir or "the default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    try:
        dataset, info = tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            download=download,
            with_info=True,
            shuffle_files=False,
        )
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(
            f"`name` must be a tensorflow-datasets dataset (see tfds.list_builders()). "
            f"Received: name={name!r} ({_first_line(error)})"
        ) from None
    except AssertionError as error:
        # tfds asserts when the prepared files are absent and download=False.
        raise OSError(
            f"tensorflow-datasets has no prepared copy of {name!r} in {where}. "
            "Pass data_dir= pointing at a prepared copy, or download=True on a machine "
            f"with internet ({_first_line(error)})"
        ) from error
    except (ValueError, KeyError) as error:
        # Bad split names and config names land here.
        raise ValueError(
            f"Could not load {name!r} split {split!r}: {_first_line(error)}"
        ) from error
    except Exception as error:  # network, permission, missing optional packages...
        raise OSError(
            f"Could not download or prepare {name!r} into {where}: "
            f"{type(error).__name__}: {_first_line(error)}. Prepare it on a machine with "
            "internet (download=True) and pass data_dir= pointing at the copy"
        ) from error
    if max_examples is not None:
        dataset = dataset.take(max_examples)
    return tfds.as_numpy(dataset), info


def _check_key(argument, key, info):
    keys = list(info.features.keys())
    if key not in keys:
        raise ValueError(
            f"`{argument}` must be a feature of {info.full_name}: one of {keys}. "
            f"Received: {argument}={key!r}"
        )


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_tfds_translation(
    name="ted_hrlr_translate/pt_to_en",
    split="train",
    source_key="pt",
    target_key="en",
    data_dir=None,
    max_examples=None,
    download=False,
):
    """A TFDS translation dataset as `TranslationData(sources, targets)`.

    Args:
        name: the TFDS name, with its config (`"wmt14_translate/de-en"`).
        split: a TFDS split string.
        source_key, target_key: the features holding the two languages.
        data_dir: where the prepared dataset lives (default: TFDS's).
        max_examples: keep the first `max_examples` pairs (default: all).
        download: let tfds download and prepare the dataset when missing.

    Returns:
        `TranslationData`: `sources[i]` (from `source_key`) translates to
        `targets[i]` (from `target_key`), as `str`.

    Example (offline: `tfds.testing.mock_data` stands in for the prepared
    dataset and yields random examples of its features):
    >>> import tensorflow_datasets as tfds
    >>> with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    ...     data = load_tfds_translation(split="validation", max_examples=3)
    >>> len(data), all(isinstance(text, str) for text in data.sources + data.targets)
    (3, True)
    """
    examples, info = _load(name, split, data_dir, download, max_examples)
    _check_key("source_key", source_key, info)
    _check_key("target_key", target_key, info)
    sources, targets = [], []
    for example in examples:
        sources.append(_text(example[source_key]))
        targets.append(_text(example[target_key]))
    return TranslationData(sources, targets)


def load_tfds_classification(
    name="imdb_reviews",
    split="train",
    text_key="text",
    label_key="label",
    data_dir=None,
    max_examples=None,
    download=False,
):
    """A TFDS text classification dataset as `ClassificationData`.

    `label_names` are the `ClassLabel` names of `label_key` (imdb_reviews:
    `["neg", "pos"]`); for a plain integer label they are `"0"`, `"1"`, ...
    up to the largest label seen.

    Args:
        name: the TFDS name (`"imdb_reviews"`, `"ag_news_subset"`, ...).
        split: a TFDS split string.
        text_key, label_key: the features holding the text and the label.
        data_dir, max_examples, download: as in `load_tfds_translation`.

    Returns:
        `ClassificationData(texts, labels, label_names)`, labels as `int`.

    Example (offline: `tfds.testing.mock_data` stands in for the prepared
    dataset and yields random examples of its features):
    >>> import tensorflow_datasets as tfds
    >>> with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    ...     data = load_tfds_classification()
    >>> len(data), data.label_names, set(data.labels) <= {0, 1}
    (4, ['neg', 'pos'], True)
    """
    examples, info = _load(name, split, data_dir, download, max_examples)
    _check_key("text_key", text_key, info)
    _check_key("label_key", label_key, info)
    texts, labels = [], []
    for example in examples:
        texts.append(_text(example[text_key]))
        labels.append(int(example[label_key]))
    label_names = list(getattr(info.features[label_key], "names", None) or [])
    if not label_names:
        label_names = [str(i) for i in range(max(labels, default=-1) + 1)]
    return ClassificationData(texts, labels, label_names)


def chunk_lines(text, chunk_characters):
    """Cuts `text` into chunks of whole lines, each at most `chunk_characters`
    long.

    Lines are packed greedily into a chunk while they fit; the line break
    between two chunks is dropped, and a line longer than `chunk_characters`
    is cut into pieces. Line breaks at either end of a chunk are stripped and
    chunks holding only whitespace are left out, so every non-space
    character of `text` lands in exactly one chunk, in order.

    Example:
    >>> chunk_lines("ab\\ncd\\nef", 5)
    ['ab\\ncd', 'ef']
    """
    chunk_characters = check_positive_int("chunk_characters", chunk_characters)
    chunks = []

    def keep(chunk):
        if chunk.strip():
            chunks.append(chunk.strip("\n"))

    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= chunk_characters:
            current = candidate
            continue
        keep(current)
        while len(line) > chunk_characters:
            keep(line[:chunk_characters])
            line = line[chunk_characters:]
        current = line
    keep(current)
    return chunks


def load_tfds_text(
    name="tiny_shakespeare",
    split="train",
    text_key="text",
    chunk_characters=256,
    data_dir=None,
    max_examples=None,
    download=False,
):
    """A TFDS text dataset as `TextData`, cut into chunks at line boundaries.

    tiny_shakespeare holds each split as one long string; every string is cut
    by `chunk_lines` into texts of at most `chunk_characters` characters, so
    they fit a generator's `sequence_length` (byte-level: one token per
    byte). `max_examples` counts chunks, not TFDS examples.

    Args:
        name: the TFDS name.
        split: a TFDS split string (tiny_shakespeare: "train", "validation",
            "test").
        text_key: the feature holding the text.
        chunk_characters: the longest chunk.
        data_dir, download: as in `load_tfds_translation`.
        max_examples: keep the first `max_examples` chunks (default: all).

    Returns:
        `TextData(texts)`, every text at most `chunk_characters` long.

    Example (offline: `tfds.testing.mock_data` stands in for the prepared
    dataset and yields random examples of its features):
    >>> import tensorflow_datasets as tfds
    >>> with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    ...     data = load_tfds_text(chunk_characters=8, max_examples=3)
    >>> len(data), all(0 < len(text) <= 8 for text in data.texts)
    (3, True)
    """
    chunk_characters = check_positive_int("chunk_characters", chunk_characters)
    max_examples = check_positive_int("max_examples", max_examples, allow_none=True)
    examples, info = _load(name, split, data_dir, download, None)
    _check_key("text_key", text_key, info)
    texts = []
    for example in examples:
        texts.extend(chunk_lines(_text(example[text_key]), chunk_characters))
        if max_examples is not None and len(texts) >= max_examples:
            return TextData(texts[:max_examples])
    return TextData(texts)
