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
"""

import argparse
import gettext
import glob
import os
import random
import statistics
import sys


def catalog_pairs(language="de", locale_dir="/usr/share/locale"):
    """English -> `language` message pairs from every `.mo` catalog installed.

    Returns a list of `(source, target)` strings, deduplicated by source,
    sorted by catalog file then message so the result does not depend on the
    file system's order.
    """
    pairs = {}
    pattern = os.path.join(locale_dir, language, "LC_MESSAGES", "*.mo")
    for path in sorted(glob.glob(pattern)):
        try:
            with open(path, "rb") as handle:
                catalog = gettext.GNUTranslations(handle)._catalog
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # an unreadable or non-UTF-8 catalog: skip it, not the corpus
        for source, target in sorted(catalog.items(), key=lambda pair: str(pair[0])):
            if isinstance(source, tuple) or not source or not target:
                continue  # plural forms and the catalog header
            source, target = _one_line(source), _one_line(target)
            if source and target and source != target and source not in pairs:
                pairs[source] = target
    return list(pairs.items())


def _one_line(text):
    return " ".join(text.replace("\t", " ").split())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", default="de")
    parser.add_argument("--locale-dir", default="/usr/share/locale")
    parser.add_argument("--out", required=True, help="the TSV file to write")
    parser.add_argument("--max-words", type=int, default=0, help="drop longer sources (0: keep)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pairs = catalog_pairs(args.language, args.locale_dir)
    if args.max_words:
        pairs = [pair for pair in pairs if len(pair[0].split()) <= args.max_words]
    if not pairs:
        sys.exit(f"no {args.language} catalogs under {args.locale_dir}")
    random.Random(args.seed).shuffle(pairs)
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write("source\ttarget\n")
        for source, target in pairs:
            handle.write(f"{source}\t{target}\n")
    words = sorted(len(source.split()) for source, _ in pairs)
    print(
        f"{len(pairs)} pairs -> {args.out}; source words: median {statistics.median(words)}, "
        f"90th percentile {words[int(0.9 * (len(words) - 1))]}, max {words[-1]}"
    )


if __name__ == "__main__":
    main()
