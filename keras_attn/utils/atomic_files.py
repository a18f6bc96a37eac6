"""Writing files and directories so that readers never see half of them.

Everything here writes to a temporary sibling of the destination (same
folder, so the same file system) and renames it into place at the end. A
failure, an interrupt included, removes the temporary and leaves whatever was
at the destination before untouched.

Example:

```python
from keras_attn.utils import write_directory_atomically, write_json_atomically

write_json_atomically("run/metrics.json", {"bleu": 27.3})

def write(directory):
    write_json_atomically(os.path.join(directory, "config.json"), config)
    model.save_weights(os.path.join(directory, "model.weights.h5"))

write_directory_atomically("my_preset", write, overwrite=True)
```
"""

import errno
import json
import os
import shutil
import tempfile

# Temporaries start with a dot so that listings and globs skip them.
_PREFIX = ".keras_attn_tmp_"


def replace_path(source, target):
    """Moves `source` (a file or a directory) to `target`, replacing what is there.

    A file replaces a file in one `os.replace`. A directory cannot be renamed
    over a non-empty directory (nor a file over a directory, or the reverse),
    so in those cases the existing `target` is first moved aside, then
    deleted once `source` is in place; if that rename fails, the old
    `target` is put back.

    Args:
        source: an existing file or directory.
        target: where it goes; its folder must exist, on the same file system.
    """
    source, target = os.fspath(source), os.fspath(target)
    if not os.path.lexists(target) or not (os.path.isdir(source) or os.path.isdir(target)):
        os.replace(source, target)
        return
    retired_parent = tempfile.mkdtemp(prefix=_PREFIX, dir=os.path.dirname(os.path.abspath(target)))
    retired = os.path.join(retired_parent, "replaced")
    os.rename(target, retired)
    try:
        os.rename(source, target)
    except BaseException:
        os.rename(retired, target)
        shutil.rmtree(retired_parent, ignore_errors=True)
        raise
    shutil.rmtree(retired_parent, ignore_errors=True)


def _created_mode(is_directory):
    """The permissions `open` / `mkdir` would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if is_directory else 0o666) & ~umask


def _write_through_staging(path, write, is_directory):
    """The shared core: `write(staging)` into a temporary sibling of `path`,
    then `replace_path(staging, path)`; the temporary goes on any failure."""
    parent = os.path.dirname(path)
    if is_directory:
        staging = tempfile.mkdtemp(prefix=_PREFIX, dir=parent)
    else:
        handle, staging = tempfile.mkstemp(prefix=_PREFIX, suffix=".part", dir=parent)
        os.close(handle)
    # mkstemp / mkdtemp make private (0600 / 0700) temporaries; what lands at
    # `path` gets the usual permissions, so a server under another user can
    # read an export or a report.
    os.chmod(staging, _created_mode(is_directory))
    try:
        write(staging)
        replace_path(staging, path)
    except BaseException:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
        elif os.path.lexists(staging):
            os.remove(staging)
        raise


def write_text_atomically(path, text):
    """Writes `text` to the file `path` (UTF-8, `\\n` line ends) atomically.

    Args:
        path: the file; its folder must exist. An existing file is replaced,
            an existing directory is not (`IsADirectoryError`).
        text: a `str`.
    """
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a str. Received: text of type {type(text).__name__}")
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not a file", path)

    def write(staging):
        with open(staging, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)

    _write_through_staging(path, write, is_directory=False)


def write_bytes_atomically(path, data):
    """Writes the `bytes` `data` to the file `path` atomically (as
    `write_text_atomically`, for binary files such as model protos)."""
    if not isinstance(data, bytes):
        raise ValueError(f"`data` must be bytes. Received: data of type {type(data).__name__}")
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not a file", path)

    def write(staging):
        with open(staging, "wb") as file:
            file.write(data)

    _write_through_staging(path, write, is_directory=False)


def write_json_atomically(path, value, indent=2):
    """Writes `value` as JSON (indented, ending in a newline) to `path` atomically.

    The value is encoded before anything is written, so a value JSON cannot
    encode raises `TypeError` and leaves `path` as it was.
    """
    write_text_atomically(path, json.dumps(value, indent=indent) + "\n")


def write_directory_atomically(path, write, overwrite=False):
    """Calls `write(staging_dir)` and moves the result to `path` only on success.

    Args:
        path: the directory to create. Its parent folders are created.
        write: a callable that fills the (empty, existing) directory it is
            given.
        overwrite: replace an existing `path` (only once `write` succeeded);
            otherwise an existing `path` raises `ValueError` before `write`
            is called.

    A failure of `write` leaves any earlier directory at `path` intact and no
    temporary behind.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise ValueError(
            f"`path` already exists: {path!r}. Pass overwrite=True to replace it."
        )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_through_staging(path, write, is_directory=True)
