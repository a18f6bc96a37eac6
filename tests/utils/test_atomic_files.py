import json
import os

import pytest

from keras_attn.utils import atomic_files
from keras_attn.utils.atomic_files import (
    replace_path,
    write_directory_atomically,
    write_json_atomically,
    write_text_atomically,
)


def _listing(folder):
    return sorted(os.listdir(folder))


def _read(path):
    with open(path, "rb") as file:
        return file.read()


def _fill(files):
    """A writer that puts `{relative path: text}` into the directory it gets."""

    def write(directory):
        for name, text in files.items():
            path = os.path.join(directory, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)

    return write


def _failing_after(files, error):
    """A writer that writes part of a directory, then raises `error`."""

    def write(directory):
        _fill(files)(directory)
        raise error

    return write


def _tree(root):
    """`{relative path: text}` of every file under `root`."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = _read(path).decode("utf-8")
    return found


class _RenameFailure(OSError):
    pass


# ------------------------------------------------------------------- text


def test_text_is_written_as_utf8_with_unix_line_ends(tmp_path):
    path = tmp_path / "vocabulary.txt"
    write_text_atomically(path, "café\nnaïve\n")
    assert _read(path) == b"caf\xc3\xa9\nna\xc3\xafve\n"
    assert _listing(tmp_path) == ["vocabulary.txt"]


def test_text_replaces_an_earlier_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old and longer than the new text")
    write_text_atomically(str(path), "new")
    assert path.read_text() == "new"
    assert _listing(tmp_path) == ["notes.txt"]


def test_a_failed_text_write_keeps_the_earlier_file_and_leaves_no_temporary(
    tmp_path, monkeypatch
):
    path = tmp_path / "notes.txt"
    path.write_text("earlier")

    def fail(source, target):
        assert _read(source) == b"new"  # written in full, only the rename fails
        raise _RenameFailure("disk gone")

    monkeypatch.setattr(atomic_files, "replace_path", fail)
    with pytest.raises(_RenameFailure):
        write_text_atomically(path, "new")
    assert path.read_text() == "earlier"
    assert _listing(tmp_path) == ["notes.txt"]


def test_text_refuses_a_directory_and_non_strings(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "kept.txt").write_text("kept")
    with pytest.raises(IsADirectoryError):
        write_text_atomically(tmp_path / "folder", "text")
    assert (tmp_path / "folder" / "kept.txt").read_text() == "kept"
    with pytest.raises(ValueError, match="`text` must be a str. Received: text of type bytes"):
        write_text_atomically(tmp_path / "x.txt", b"bytes")
    assert _listing(tmp_path) == ["folder"]


def test_text_in_a_missing_folder_raises_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text_atomically(tmp_path / "missing" / "x.txt", "text")
    assert _listing(tmp_path) == []


# ------------------------------------------------------------------- json


def test_json_round_trip(tmp_path):
    value = {
        "bleu": 27.25,
        "examples": 3,
        "samples": ["seven hundred one -> 701", "café"],
        "nested": {"ok": True, "missing": None, "list": [1, 2.5, "x"]},
    }
    path = tmp_path / "metrics.json"
    write_json_atomically(path, value)
    with open(path, encoding="utf-8") as file:
        assert json.load(file) == value
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and '\n  "bleu": 27.25' in text  # indented, one final newline


def test_json_that_cannot_be_encoded_keeps_the_earlier_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomically(path, {"run": 1})
    with pytest.raises(TypeError):
        write_json_atomically(path, {"run": 2, "model": object()})
    with open(path, encoding="utf-8") as file:
        assert json.load(file) == {"run": 1}
    assert _listing(tmp_path) == ["metrics.json"]


# -------------------------------------------------------------- directory


def test_directory_is_created_with_its_parents(tmp_path):
    path = tmp_path / "runs" / "a" / "preset"
    write_directory_atomically(path, _fill({"config.json": "{}", "tokenizer/vocab.txt": "a\n"}))
    assert _tree(path) == {"config.json": "{}", os.path.join("tokenizer", "vocab.txt"): "a\n"}
    assert _listing(path.parent) == ["preset"]


def test_an_existing_directory_needs_overwrite(tmp_path):
    path = tmp_path / "preset"
    write_directory_atomically(path, _fill({"config.json": "old"}))
    called = []
    with pytest.raises(ValueError, match=r"`path` already exists: .*Pass overwrite=True"):
        write_directory_atomically(path, called.append)
    assert called == []  # refused before any work
    assert _tree(path) == {"config.json": "old"}


def test_overwrite_replaces_the_whole_directory(tmp_path):
    path = tmp_path / "preset"
    write_directory_atomically(path, _fill({"config.json": "old", "stale.h5": "old"}))
    write_directory_atomically(path, _fill({"config.json": "new"}), overwrite=True)
    assert _tree(path) == {"config.json": "new"}  # nothing of the old one left
    assert _listing(tmp_path) == ["preset"]


def test_overwrite_replaces_a_file_at_the_path(tmp_path):
    path = tmp_path / "preset"
    path.write_text("a file")
    write_directory_atomically(path, _fill({"config.json": "new"}), overwrite=True)
    assert _tree(path) == {"config.json": "new"}
    assert _listing(tmp_path) == ["preset"]


@pytest.mark.parametrize("error", [RuntimeError("writer failed"), KeyboardInterrupt()])
def test_a_failing_writer_keeps_the_earlier_directory_and_leaves_no_temporary(tmp_path, error):
    path = tmp_path / "preset"
    write_directory_atomically(path, _fill({"config.json": "old"}))
    with pytest.raises(type(error)):
        write_directory_atomically(
            path, _failing_after({"config.json": "half", "x": "y"}, error), overwrite=True
        )
    assert _tree(path) == {"config.json": "old"}
    assert _listing(tmp_path) == ["preset"]


def test_a_failing_writer_creates_nothing_new(tmp_path):
    with pytest.raises(RuntimeError):
        write_directory_atomically(
            tmp_path / "preset", _failing_after({"config.json": "half"}, RuntimeError())
        )
    assert _listing(tmp_path) == []


# ------------------------------------------------------------ replace_path


def test_replace_path_moves_files_and_directories_over_what_is_there(tmp_path):
    (tmp_path / "new.csv").write_text("new")
    (tmp_path / "log.csv").write_text("old")
    replace_path(tmp_path / "new.csv", tmp_path / "log.csv")
    assert (tmp_path / "log.csv").read_text() == "new"

    _fill({"a.txt": "new"})(str(tmp_path / "work"))
    _fill({"a.txt": "old", "b/c.txt": "old"})(str(tmp_path / "preset"))
    replace_path(tmp_path / "work", tmp_path / "preset")
    assert _tree(tmp_path / "preset") == {"a.txt": "new"}

    _fill({"d.txt": "fresh"})(str(tmp_path / "more"))
    replace_path(tmp_path / "more", tmp_path / "absent")
    assert _tree(tmp_path / "absent") == {"d.txt": "fresh"}
    assert _listing(tmp_path) == ["absent", "log.csv", "preset"]


def test_replace_path_puts_the_old_directory_back_when_the_move_fails(tmp_path):
    _fill({"a.txt": "old"})(str(tmp_path / "preset"))
    with pytest.raises(FileNotFoundError):
        replace_path(tmp_path / "missing", tmp_path / "preset")
    assert _tree(tmp_path / "preset") == {"a.txt": "old"}
    assert _listing(tmp_path) == ["preset"]


def test_written_files_and_directories_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        write_text_atomically(tmp_path / "report.html", "<p>hi</p>")
        write_directory_atomically(tmp_path / "export", lambda d: None)
    finally:
        os.umask(previous)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "export").stat().st_mode & 0o777 == 0o755
