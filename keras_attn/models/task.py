"""What every ready-made model shares: a backbone, a tokenizer, presets and
preset directories."""

import inspect
import json
import os

import keras

from keras_attn import __version__
from keras_attn.tokenizers import ByteTokenizer, Tokenizer
from keras_attn.utils.arguments import check_choice
from keras_attn.utils.atomic_files import write_directory_atomically, write_json_atomically

PRESET_CONFIG_FILE = "config.json"
PRESET_WEIGHTS_FILE = "model.weights.h5"
PRESET_TOKENIZER_DIR = "tokenizer"


def deserialize_part(value):
    """A backbone or tokenizer given as an object or as its Keras config."""
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(value)
    return value


def check_tokenizer_fits(tokenizer, vocabulary_size, name="tokenizer"):
    """Raises unless every id of `tokenizer` indexes the model's embeddings.

    Skipped while the tokenizer waits for its vocabulary: a model loaded from
    a `.keras` file is built before the tokenizer's assets are restored.
    """
    if tokenizer.has_vocabulary and tokenizer.vocabulary_size > vocabulary_size:
        raise ValueError(
            f"The tokenizer's ids must fit the model: `{name}.vocabulary_size` "
            f"({tokenizer.vocabulary_size}) must be <= the model's vocabulary size "
            f"({vocabulary_size})"
        )


def tokenizer_and_vocabulary(tokenizer, backbone_config, key="vocabulary_size"):
    """The given tokenizer (default: byte-level) and a backbone config whose
    vocabulary defaults to the tokenizer's."""
    tokenizer = tokenizer or ByteTokenizer()
    backbone_config = dict(backbone_config)
    backbone_config.setdefault(key, tokenizer.vocabulary_size)
    return tokenizer, backbone_config


class Task(keras.Model):
    """Base of the ready-made models (`Generator`, `Classifier`,
    `MaskedLanguageModel`, `Translator`).

    A task owns a backbone (the network) and the tokenizer(s) that turn text
    into its inputs, so it takes strings and returns strings. Subclasses set
    `presets` (name -> dict with `"backbone"` config, `"description"` and
    task arguments) and implement `from_parts(backbone_config, tokenizers,
    **task_args)`.
    """

    presets = {}
    backbone_cls = None
    tokenizer_names = ("tokenizer",)

    def get_config(self):
        """Name, backbone and tokenizers; subclasses add their own arguments."""
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
        }
        for name in self.tokenizer_names:
            config[name] = keras.saving.serialize_keras_object(getattr(self, name))
        return config

    # ------------------------------------------------------------ presets

    @classmethod
    def preset_names(cls):
        return sorted(cls.presets)

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """A model from a built-in preset name or a preset directory.

        Args:
            preset: a name from `preset_names()` (an untrained model of that
                architecture) or a directory written by `save_to_preset`
                (architecture, weights and tokenizer).
            **kwargs: for a name, tokenizers (`tokenizer=...`) and overrides
                of the preset's backbone or task arguments.
        """
        if isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset):
            return cls._load_preset_directory(os.fspath(preset))
        check_choice("preset", preset, cls.preset_names())
        spec = cls.presets[preset]
        backbone_config = dict(spec["backbone"])
        task_args = {k: v for k, v in spec.items() if k not in ("backbone", "description")}
        tokenizers = {}
        for name in cls.tokenizer_names:
            if name in kwargs:
                tokenizers[name] = kwargs.pop(name)
        for key in list(kwargs):
            if key in backbone_config or key in cls.backbone_arguments():
                backbone_config[key] = kwargs.pop(key)
        task_args.update(kwargs)
        return cls.from_parts(backbone_config, tokenizers, **task_args)

    @classmethod
    def backbone_arguments(cls):
        return set(inspect.signature(cls.backbone_cls.__init__).parameters) - {"self", "kwargs"}

    @classmethod
    def from_parts(cls, backbone_config, tokenizers, **task_args):
        raise NotImplementedError

    def save_to_preset(self, path, overwrite=False):
        """Writes config, weights and tokenizer assets to directory `path`.

        `from_preset(path)` loads it back. The directory is written to a
        temporary sibling and renamed at the end, so a failure leaves any
        earlier preset at `path` intact.
        """

        def write(directory):
            config = {
                "task": keras.saving.get_registered_name(type(self)),
                "config": self.get_config(),
                "keras_attn_version": __version__,
            }
            write_json_atomically(os.path.join(directory, PRESET_CONFIG_FILE), config)
            self.save_weights(os.path.join(directory, PRESET_WEIGHTS_FILE))
            for name in self.tokenizer_names:
                tokenizer = getattr(self, name)
                tokenizer.save(os.path.join(directory, PRESET_TOKENIZER_DIR, name))

        write_directory_atomically(path, write, overwrite=overwrite)

    @classmethod
    def _load_preset_directory(cls, path):
        config_path = os.path.join(path, PRESET_CONFIG_FILE)
        if not os.path.isfile(config_path):
            raise ValueError(
                f"`preset` directory {path!r} has no {PRESET_CONFIG_FILE}; expected a "
                "directory written by save_to_preset()"
            )
        with open(config_path, encoding="utf-8") as f:
            saved = json.load(f)
        expected = keras.saving.get_registered_name(cls)
        if saved.get("task") != expected:
            raise ValueError(
                f"`preset` directory {path!r} holds a {saved.get('task')!r} model, "
                f"not a {expected!r}"
            )
        config = dict(saved["config"])
        for name in cls.tokenizer_names:
            tokenizer_dir = os.path.join(path, PRESET_TOKENIZER_DIR, name)
            config[name] = Tokenizer.from_directory(tokenizer_dir)
        model = cls.from_config(config)
        model.load_weights(os.path.join(path, PRESET_WEIGHTS_FILE))
        return model
