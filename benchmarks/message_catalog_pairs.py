"""Real sentence pairs, offline: the translated messages of this machine's programs.

Every Debian/Ubuntu package that speaks German ships a gettext catalog
(`/usr/share/locale/de/LC_MESSAGES/*.mo`) pairing each English message with
its translation. Together they make a parallel corpus of real, long-tailed
text: one-word menu labels, error messages with punctuation and placeholders
(`'Datei »%s« nicht gefunden.'`), whole paragraphs of help text, Unicode
quotes and umlauts. The benchmarks and the `*_small_files` recipes measure
on it because it needs no download.

    python benchmarks/message_catalog_pairs.py --language de --out pairs_de.tsv

writes `source<TAB>target` rows (English, then the translation), newlines and
tabs inside a message turned into spaces, pairs whose two sides are equal
(names, numbers) and duplicates left out, in a fixed shuffled order. More
packages give more pairs (e.g. `apt-get install coreutils tar gettext`).

The same catalogs make the data of the other two `*_small_files` recipes:

    python benchmarks/message_catalog_pairs.py --task classify --out programs.tsv
    python benchmarks/message_catalog_pairs.py --task generate --out messages_de.txt

`--task classify` writes `label<TAB>text` rows: an English message and the
program (catalog) it comes from, for the `--num-classes` catalogs with the
most messages (8), messages found in more than one of them left out.
`--task generate` writes one German message per line.
"""

import argparse
import gettext
import glob
import os
import random
import statistics
import sys


def catalog_messages(language="de", locale_dir="/usr/share/locale"):
    """`(catalog, source, target)` of every translated message installed.

    `catalog` is the `.mo` file's name without `.mo` (the program, e.g.
    `coreutils`); messages are on one line each, pairs whose two sides are
    equal left out; sorted by catalog file then message so the result does
    not depend on the file system's order. A message may be in several
    catalogs.
    """
    messages = []
    pattern = os.path.join(locale_dir, language, "LC_MESSAGES", "*.mo")
    for path in sorted(glob.glob(pattern)):
        try:
            with open(path, "rb") as handle:
                catalog = gettext.GNUTranslations(handle)._catalog
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # an unreadable or non-UTF-8 catalog: skip it, not the corpus
        name = os.path.splitext(os.path.basename(path))[0]
        for source, target in sorted(catalog.items(), key=lambda pair: str(pair[0])):
            if isinstance(source, tuple) or not source or not target:
                continue  # plural forms and the catalog header
            # A message with a context is stored as "context\x04message".
            source = _one_line(source.rpartition("\x04")[2])
            target = _one_line(target)
            if source and target and source != target:
                messages.append((name, source, target))
    return messages


def catalog_pairs(language="de", locale_dir="/usr/share/locale"):
    """English -> `language` message pairs from every `.mo` catalog installed.

    Returns a list of `(source, target)` strings, deduplicated by source
    (the first catalog's translation kept).
    """
    pairs = {}
    for _, source, target in catalog_messages(language, locale_dir):
        pairs.setdefault(source, target)
    return list(pairs.items())


def program_labels(num_classes=8, language="de", locale_dir="/usr/share/locale"):
    """`(program, message)` rows of the `num_classes` catalogs with the most
    messages: English messages labelled with the program they come from.
    Messages that occur in more than one catalog are left out (no one label
    is right for them); the count that decides the largest catalogs is taken
    after that."""
    owners = {}
    for name, source, _ in catalog_messages(language, locale_dir):
        owners.setdefault(source, set()).add(name)
    unique = {source: names.pop() for source, names in owners.items() if len(names) == 1}
    sizes = {}
    for name in unique.values():
        sizes[name] = sizes.get(name, 0) + 1
    largest = set(sorted(sizes, key=lambda name: (-sizes[name], name))[:num_classes])
    return sorted((name, source) for source, name in unique.items() if name in largest)


def _one_line(text):
    return " ".join(text.replace("\t", " ").split())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", default="de")
    parser.add_argument("--locale-dir", default="/usr/share/locale")
    parser.add_argument("--out", required=True, help="the file to write")
    parser.add_argument("--task", choices=("translate", "classify", "generate"),
                        default="translate",
                        help="translate: source<TAB>target pairs; classify: program<TAB>message; "
                             "generate: one translated message per line")
    parser.add_argument("--num-classes", type=int, default=8,
                        help="classify: how many of the largest catalogs")
    parser.add_argument("--max-words", type=int, default=0, help="drop longer sources (0: keep)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.task == "classify":
        rows = program_labels(args.num_classes, args.language, args.locale_dir)
    else:
        rows = catalog_pairs(args.language, args.locale_dir)
        if args.task == "generate":  # the translations, deduplicated in order
            rows = [(target,) for target in dict.fromkeys(target for _, target in rows)]
    if args.max_words:
        rows = [row for row in rows if len(row[-1 if args.task == "classify" else 0].split())
                <= args.max_words]
    if not rows:
        sys.exit(f"no {args.language} catalogs under {args.locale_dir}")
    random.Random(args.seed).shuffle(rows)
    with open(args.out, "w", encoding="utf-8") as handle:
        if args.task == "translate":
            handle.write("source\ttarget\n")
        for row in rows:
            handle.write("\t".join(row) + "\n")
    texts = [row[-1] if args.task == "classify" else row[0] for row in rows]
    words = sorted(len(text.split()) for text in texts)
    kind = {"translate": "pairs", "classify": "labelled messages", "generate": "texts"}[args.task]
    print(
        f"{len(rows)} {kind} -> {args.out}; words per text: median {statistics.median(words)}, "
        f"90th percentile {words[int(0.9 * (len(words) - 1))]}, max {words[-1]}"
    )
    if args.task == "classify":
        counts = {}
        for label, _ in rows:
            counts[label] = counts.get(label, 0) + 1
        print("  " + ", ".join(f"{label} {count}" for label, count in
                               sorted(counts.items(), key=lambda item: -item[1])))


if __name__ == "__main__":
    main()
