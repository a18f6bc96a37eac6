"""Small helpers shared across keras-attn: argument checks, atomic file writes,
initializer cloning."""

from keras_attn.utils.arguments import (
    check_choice,
    check_non_negative_int,
    check_positive_int,
    check_positive_number,
    check_rank,
    check_rate,
)
from keras_attn.utils.atomic_files import (
    replace_path,
    write_directory_atomically,
    write_json_atomically,
    write_text_atomically,
)
from keras_attn.utils.initializers import clone_initializer

__all__ = [
    "check_choice",
    "check_non_negative_int",
    "check_positive_int",
    "check_positive_number",
    "check_rank",
    "check_rate",
    "clone_initializer",
    "replace_path",
    "write_directory_atomically",
    "write_json_atomically",
    "write_text_atomically",
]
