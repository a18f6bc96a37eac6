"""What every ready-made model shares: a backbone, a tokenizer, presets and
preset directories."""

import collections
import dataclasses
import inspect
import json
import os

import keras
import numpy as np

# Tasks decode through tf.function loops compiled with XLA; the helper below
# is the one place that says so (the layers stay backend-agnostic).
import tensorflow as tf

from keras_attn.data.bucketing import (
    bucketed_batches,
    choose_boundaries,
    choose_group_boundaries,
)
from keras_attn.tokenizers import ByteTokenizer, Tokenizer
from keras_attn.training.compilation import (
    check_jit_compile,
    resolve_jit_compile,
    steps_of_run,
    xla_repays_compiling,
)
from keras_attn.training.losses import MaskedSparseCategoricalCrossentropy
from keras_attn.training.metrics import MaskedAccuracy
from keras_attn.utils.arguments import check_choice
from keras_attn.utils.atomic_files import write_directory_atomically, write_json_atomically
from keras_attn.version import __version__

PRESET_CONFIG_FILE = "config.json"
PRESET_WEIGHTS_FILE = "model.weights.h5"
PRESET_TOKENIZER_DIR = "tokenizer"


AttentionKind = collections.namedtuple(
    "AttentionKind",
    [
        "queries", "keys", "scores_output", "head_mask_argument", "head_counts",
        "multiplier_argument",
    ],
    defaults=(None,),
)
AttentionKind.__doc__ = """One attention of a task's backbone, as `Task.attention_kinds` lists it.

Fields:
    queries, keys: names of the token sequences (`TextInputs.tokens` keys)
        its rows and columns belong to.
    scores_output: the backbone output holding its weights when called with
        `return_attention_scores=True`, `(layers, batch, heads, queries, keys)`.
    head_mask_argument: the backbone call argument that masks its heads.
    head_counts: the backbone attribute listing its heads per layer.
    multiplier_argument: the backbone call argument that multiplies its
        post-softmax weights, `(layers, batch, heads, queries, keys)` (ones
        change nothing; gradients with respect to it at ones are
        `A * dL/dA`). `None` where the backbone has none.
"""


@dataclasses.dataclass
class TextInputs:
    """A batch of texts as backbone inputs, with the token at each position.

    Attributes:
        inputs: the backbone's inputs, numpy `(batch, time)` arrays trimmed
            to the batch's longest row (right-padded with 0).
        tokens: sequence name (`"tokens"`, or `"source"` and `"target"`) ->
            per row, the token strings of its real positions (padding
            removed); position `i` of a row is position `i` of the inputs.
        truncated: sequence name -> int numpy `(batch,)`, tokens cut from
            each row to fit the model.
    """

    inputs: dict
    tokens: dict
    truncated: dict

    @property
    def batch_size(self):
        return len(next(iter(self.tokens.values())))


def token_strings(tokenizer, token_ids, lengths):
    """Per row, the token strings of its first `lengths[row]` ids."""
    return [
        [tokenizer.id_to_token(int(token)) for token in row[:length]]
        for row, length in zip(np.asarray(token_ids), np.asarray(lengths))
    ]


def pad_ragged_ids(ids, max_length, pad_id):
    """Ragged ids `(batch, None)` kept to their first `max_length` tokens and
    right-padded to the longest kept row: `(ids (B, T) int32 numpy, lengths
    (B,), truncated (B,))`."""
    lengths = ids.row_lengths().numpy()
    kept = np.minimum(lengths, max_length)
    width = max(int(kept.max(initial=0)), 1)
    dense = ids[:, :width].to_tensor(default_value=pad_id, shape=[None, width]).numpy()
    return dense.astype("int32"), kept.astype("int32"), (lengths - kept).astype("int32")


def trim_to_longest(inputs, lengths):
    """`inputs` (dict of `(batch, time)` arrays) cut to the longest row."""
    width = max(int(np.max(lengths, initial=0)), 1)
    return {name: np.asarray(value)[:, :width] for name, value in inputs.items()}


def dedicated_pad_id(tokenizer):
    """`tokenizer.pad_id` when no other special role shares it, else `None`."""
    if tokenizer is None:
        return 0
    roles = tokenizer.special_token_ids
    shared = [role for role, id in roles.items() if role != "pad" and id == roles["pad"]]
    return None if shared else tokenizer.pad_id


# Buckets of length a `make_dataset(bucketing=True)` uses: each is one shape
# the compiled train step is traced and XLA-compiled for.
DEFAULT_NUM_BUCKETS = 4
# Each bucket is one more shape the train step is compiled for (seconds of
# XLA on a CPU): a bucket has to fill this many batches an epoch to repay
# it, so small datasets get fewer buckets (at least one, cut to the longest
# row, never wider than the model).
MIN_BATCHES_PER_BUCKET = 16
# Rows preprocessed per graph call while bucketing reads the lengths.
_PREPROCESS_CHUNK = 4096
# To read a run's length from `fit` / `evaluate` arguments as Keras takes them.
_FIT_SIGNATURE = inspect.signature(keras.Model.fit)
_EVALUATE_SIGNATURE = inspect.signature(keras.Model.evaluate)


def check_bucketing(bucketing):
    """`bucketing` as a number of buckets (0: off): True is
    `DEFAULT_NUM_BUCKETS`, an int >= 1 that many."""
    if isinstance(bucketing, bool):
        return DEFAULT_NUM_BUCKETS if bucketing else 0
    if isinstance(bucketing, int) and bucketing >= 1:
        return bucketing
    raise ValueError(
        "`bucketing` must be True, False or a positive int (the number of length buckets). "
        f"Received: bucketing={bucketing!r}"
    )


def preprocessed_arrays(columns, preprocess):
    """`preprocess` over raw `columns` in chunks, as one nest of numpy arrays
    (the examples in order)."""
    dataset = tf.data.Dataset.from_tensor_slices(tuple(columns)).batch(_PREPROCESS_CHUNK)
    chunks = [preprocess(*chunk) for chunk in dataset]
    return tf.nest.map_structure(
        lambda *parts: np.concatenate([np.asarray(part) for part in parts]), *chunks
    )


def real_length(mask):
    """Per row, 1 + the last position where `mask` is true (at least 1): the
    width a row keeps when trailing padding is cut."""
    mask = np.asarray(mask).astype(bool)
    last = mask.shape[1] - np.argmax(mask[:, ::-1], axis=1)
    return np.where(mask.any(axis=1), last, 1).astype("int64")


def length_bucketed(arrays, lengths, widths, batch_size, shuffle, seed, num_buckets,
                    groups=None):
    """`keras_attn.data.bucketed_batches` of a task's preprocessed arrays,
    with boundaries fitted to the lengths.

    Training (`shuffle=True`) promotes each bucket's leftovers to the next
    wider bucket, so an epoch drops fewer than `batch_size` examples, as an
    unbucketed one does; evaluation (`shuffle=False`) keeps every example
    (a smaller last batch). Trailing positions cut from a row are padding
    only, so losses and metrics (which skip padding) are unchanged. A
    dataset of fewer than `num_buckets * MIN_BATCHES_PER_BUCKET` batches
    gets fewer buckets.
    """
    num_examples = len(next(iter(lengths.values())) if isinstance(lengths, dict) else lengths)
    if num_examples < (batch_size if shuffle else 1):
        raise ValueError(
            f"`batch_size`={batch_size} needs at least that many examples for training "
            f"batches (every batch is full). Received: {num_examples} example(s); lower "
            "`batch_size`"
        )
    num_buckets = max(1, min(num_buckets, num_examples // (batch_size * MIN_BATCHES_PER_BUCKET)))
    if groups is None:
        boundaries = choose_boundaries(lengths, widths, num_buckets)
    else:
        boundaries = choose_group_boundaries(lengths, widths, num_buckets)
    remainder = "promote" if shuffle else "keep"
    return bucketed_batches(arrays, lengths, boundaries, batch_size, shuffle=shuffle,
                            seed=seed, remainder=remainder, groups=groups)


def compiled(function):
    """`function` compiled with XLA; retraced only for new shapes or static args."""
    # The loops use ops.while_loop / ops.cond explicitly; autograph would
    # rewrite the Python-side argument checks instead.
    return tf.function(function, jit_compile=True, autograph=False)


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

    A task owns a backbone (the network), the tokenizer(s) that turn text
    into its inputs and the preprocessor built from them, so it takes strings
    and returns strings. It also says everything the recipes, the CLI and the
    exports need to know about it, so they dispatch on these attributes and
    never on a table of task classes:

    - `task_name` (`"generator"`, ...) and `data_task`, the
      `keras_attn.data` kind of examples it trains on;
    - `compile()` defaults: loss, metrics, optimizer and XLA;
    - `dataset_from_data(data, ...)`: `tf.data` batches from loaded data;
    - `evaluate_data(data, options)` and `evaluation_options`;
    - `serving_endpoints(...)`: the exported SavedModel signatures.

    Subclasses set `presets` (name -> dict with `"backbone"` config,
    `"description"` and task arguments) and implement `from_parts(
    backbone_config, tokenizers, **task_args)`.

    Example:
    >>> generator_class = Task.for_name("generator")
    >>> generator_class.__name__, generator_class.data_task
    ('Generator', 'generation')
    >>> sorted(Task.registered_tasks())
    ['classifier', 'generator', 'masked_lm', 'translator']
    >>> generator = generator_class.from_preset("tiny", sequence_length=16, num_layers=1)
    >>> generator.save_to_preset("my_generator")
    >>> reloaded = generator_class.from_preset("my_generator")  # a preset directory
    >>> reloaded.backbone.num_layers, reloaded.backbone.sequence_length
    (1, 16)
    """

    presets = {}
    backbone_cls = None
    tokenizer_names = ("tokenizer",)
    # The backbone argument each tokenizer's vocabulary sizes.
    vocabulary_keys = {"tokenizer": "vocabulary_size"}
    task_name = None
    data_task = None
    evaluation_options = ()
    # name (`"encoder"`, `"decoder"`, `"cross"`) -> `AttentionKind`.
    attention_kinds = {}

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

    @classmethod
    def for_name(cls, task_name):
        """The task class registered under `task_name` (e.g. `"generator"`)."""
        tasks = cls.registered_tasks()
        check_choice("task", task_name, sorted(tasks))
        return tasks[task_name]

    @classmethod
    def registered_tasks(cls):
        """`{task_name: class}` of every task class defined so far."""
        found, pending = {}, list(cls.__subclasses__())
        while pending:
            subclass = pending.pop()
            pending.extend(subclass.__subclasses__())
            if subclass.task_name:
                found.setdefault(subclass.task_name, subclass)
        return found

    # ------------------------------------------------------- looking inside

    def logits_from_backbone(self, backbone_outputs, inputs, training=None):
        """The task's float32 logits from its backbone's outputs.

        `call(inputs)` is `logits_from_backbone(backbone(inputs), inputs)`;
        interpretability methods call the backbone themselves (with
        attention scores, head masks or token embeddings) and finish here.
        """
        raise NotImplementedError

    def texts_to_inputs(self, texts, targets=None):
        """A `TextInputs` of `texts` for looking inside the model.

        `targets` are the task's second texts where it has them: a
        generator's continuations (appended to the prompts; or
        `max_new_tokens=n` generates them), a translator's target texts
        (default: its own greedy translations), a classifier's text pairs.
        """
        raise NotImplementedError

    # ------------------------------------------------------------- training

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        metrics="auto",
        label_smoothing=0.0,
        jit_compile="auto",
        **kwargs,
    ):
        """`keras.Model.compile` with this task's defaults.

        Args:
            optimizer: `"auto"` is Adam with learning rate 1e-3.
            loss: `"auto"` is the task's loss (`default_loss`).
            metrics: `"auto"` are the task's metrics (`default_metrics`).
            label_smoothing: of the `"auto"` loss (an error with any other).
            jit_compile: XLA-compile the train step: `True`, `False`, or
                `"auto"` (default): on with a GPU or TPU, and on a CPU for
                models up to 128 wide computing in float32 (64 in
                bfloat16), where it was measured to pay, once the first
                `fit` or `evaluate` after compiling runs at least
                `XLA_CPU_MIN_STEPS` steps (a shorter run never repays the
                compile time; `keras_attn.training.compilation`). Keras'
                own `"auto"` would turn it off on every CPU. Decoding
                (`generate`) keeps the choice made here, whatever the run
                length: `decoding_jit_compile`.
            **kwargs: passed to `keras.Model.compile`.
        """
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3)
        if isinstance(loss, str) and loss == "auto":
            loss = self.default_loss(label_smoothing)
        elif label_smoothing:
            raise ValueError(
                "`label_smoothing` applies to the task's own loss (loss='auto'); set it on "
                f"your loss instead. Received: label_smoothing={label_smoothing} with "
                f"loss={loss!r}"
            )
        if isinstance(metrics, str) and metrics == "auto":
            metrics = self.default_metrics()
        jit_compile_auto = check_jit_compile("jit_compile", jit_compile) == "auto"
        jit_compile = resolve_jit_compile(jit_compile, self.backbone.hidden_dim,
                                          self.backbone.dtype_policy.compute_dtype)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        jit_compile=jit_compile, **kwargs)
        self._jit_compile_auto = jit_compile_auto
        # Decoding loops run many steps a call: they keep this choice, which
        # a short run's fit does not change (`_settle_jit_compile`).
        self.decoding_jit_compile = jit_compile

    def compile_from_config(self, config):
        """Restores a saved compile state (`.keras` files). `compile` above
        only fills in defaults, so the saved optimizer, loss and metrics go
        through it unchanged."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            # Optimizer variables exist before the saved values are loaded.
            self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`; a `tf.data.Dataset` (as `make_dataset` builds,
        shuffled already) is not asked to shuffle again, which Keras would
        ignore with a warning."""
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)
        run = _FIT_SIGNATURE.bind(self, x, *args, **kwargs).arguments
        steps = steps_of_run(x, run.get("batch_size"), run.get("steps_per_epoch"),
                             run.get("epochs", 1) - run.get("initial_epoch", 0))
        self._settle_jit_compile("train_function", steps)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate` (with `jit_compile="auto"`, XLA only for a
        run that repays its compile time, as in `fit`)."""
        run = _EVALUATE_SIGNATURE.bind(self, x, *args, **kwargs).arguments
        self._settle_jit_compile(
            "test_function", steps_of_run(x, run.get("batch_size"), run.get("steps")))
        return super().evaluate(x, *args, **kwargs)

    def _settle_jit_compile(self, function, steps):
        """Under `compile(jit_compile="auto")`, before Keras makes the step
        function of a run of `steps` steps: XLA only if it pays for this
        model here and the run repays compiling."""
        if getattr(self, "_jit_compile_auto", False) and getattr(self, function, None) is None:
            self.jit_compile = self.decoding_jit_compile and xla_repays_compiling(steps)

    def ignored_label(self):
        """The label id the default loss and metrics skip: the tokenizer's
        padding id when it is a token of its own (`[PAD]`=0 here, BERT's
        `[PAD]`), else `None`. A padding id shared with another role (GPT-2
        pads with `<|endoftext|>`, its end token) is a real target where it
        ends a text, so the preprocessors' sample weights alone mark the
        padding then."""
        tokenizer = getattr(self, "target_tokenizer", None) or getattr(self, "tokenizer", None)
        return dedicated_pad_id(tokenizer)

    def default_loss(self, label_smoothing=0.0):
        """Token cross-entropy that ignores padding (`ignored_label`)."""
        return MaskedSparseCategoricalCrossentropy(
            label_smoothing=label_smoothing, ignore_index=self.ignored_label()
        )

    def default_metrics(self):
        return [MaskedAccuracy(ignore_index=self.ignored_label())]

    def dataset_from_data(self, data, batch_size=32, shuffle=True, seed=0, bucketing=True):
        """`tf.data` batches for `fit` from loaded data (`keras_attn.data`);
        `bucketing` as in the task's `make_dataset`."""
        raise NotImplementedError

    def arguments_from_data(self, data):
        """Task arguments a model built for `data` needs (e.g. the labels)."""
        return {}

    @classmethod
    def arguments_for_data(cls, data):
        """As `arguments_from_data`, before a model exists."""
        return {}

    def check_fits_data(self, data):
        """Raises `ValueError` if this model cannot learn from `data`."""

    def evaluate_data(self, data, options=None):
        """Scores the model on loaded data.

        Args:
            data: examples from `keras_attn.data`.
            options: dict of this task's `evaluation_options` (and
                `num_examples`, `batch_size`).

        Returns:
            `(metrics dict, samples)`: samples are a few outputs as strings.
        """
        raise NotImplementedError

    # -------------------------------------------------------------- serving

    def serving_endpoints(self, jit_compile=True, **options):
        """The `keras_attn.models.serving.Endpoint`s of an export."""
        raise NotImplementedError

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
            **kwargs: for a name, tokenizers (`tokenizer=...`; the
                vocabulary size then follows the tokenizer) and overrides of
                the preset's backbone or task arguments.
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
        for name, tokenizer in tokenizers.items():
            key = cls.vocabulary_keys.get(name)
            if key and key not in kwargs and tokenizer.has_vocabulary:
                # The embeddings fit the given tokenizer, not the preset's.
                backbone_config[key] = tokenizer.vocabulary_size
        for key in list(kwargs):
            if key in backbone_config or key in cls.backbone_arguments():
                backbone_config[key] = kwargs.pop(key)
        if "dtype" in kwargs:
            # The backbone does the computing: a dtype policy given for the
            # task is the backbone's too (else it would stay float32).
            backbone_config["dtype"] = kwargs["dtype"]
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
            weights_path = os.path.join(directory, PRESET_WEIGHTS_FILE)
            self.save_weights(weights_path)
            _stamp_architecture(weights_path, self.backbone)
            for name in self.tokenizer_names:
                tokenizer = getattr(self, name)
                tokenizer.save(os.path.join(directory, PRESET_TOKENIZER_DIR, name))

        write_directory_atomically(path, write, overwrite=overwrite)

    @classmethod
    def _load_preset_directory(cls, path):
        """The model saved in preset directory `path`.

        Raises a `ValueError` naming the file at fault: a missing, empty or
        cut `config.json` (with the line and column where the JSON breaks)
        or one that does not describe this task; a missing, empty or cut
        `model.weights.h5`; a config whose architecture differs from the one
        the weights were saved with (naming each setting, e.g.
        `source_length`: 32 in config.json, 16 in the weights), or weights
        that do not fit the config's model.
        """
        config_path = os.path.join(path, PRESET_CONFIG_FILE)
        weights_path = os.path.join(path, PRESET_WEIGHTS_FILE)
        if not os.path.isfile(config_path):
            raise ValueError(
                f"`preset` directory {path!r} has no {PRESET_CONFIG_FILE}; expected a "
                "directory written by save_to_preset()"
            )
        saved = _read_preset_config(config_path)
        expected = keras.saving.get_registered_name(cls)
        if saved.get("task") != expected:
            raise ValueError(
                f"`preset` directory {path!r} holds a {saved.get('task')!r} model, "
                f"not a {expected!r}"
            )
        if not os.path.isfile(weights_path):
            raise ValueError(
                f"`preset` directory {path!r} has no {PRESET_WEIGHTS_FILE}; expected a "
                "directory written by save_to_preset()"
            )
        saved_architecture = _read_architecture_stamp(weights_path)
        config = dict(saved["config"])
        for name in cls.tokenizer_names:
            tokenizer_dir = os.path.join(path, PRESET_TOKENIZER_DIR, name)
            config[name] = Tokenizer.from_directory(tokenizer_dir)
        try:
            model = cls.from_config(config)
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"{config_path}: invalid model config: {error}") from error
        if saved_architecture is not None:
            _check_architecture(config_path, weights_path, model.backbone, saved_architecture)
        try:
            model.load_weights(weights_path)
        except (ValueError, OSError, KeyError) as error:
            raise ValueError(
                f"{weights_path}: the weights do not fit the model {config_path} describes "
                f"(was one of the files edited or replaced?): {error}"
            ) from error
        return model


# The HDF5 attribute of a preset's weights file holding the backbone
# architecture they were saved with, so a config edited later is caught.
_ARCHITECTURE_ATTRIBUTE = "keras_attn_architecture"
# Backbone settings that may change without changing the weights' meaning.
_FREE_SETTINGS = ("dropout",)


def _architecture(backbone):
    return {
        key: getattr(backbone, key)
        for key in backbone.config_keys
        if key not in _FREE_SETTINGS
    }


def _stamp_architecture(weights_path, backbone):
    import h5py  # Keras' own weights-file dependency.

    with h5py.File(weights_path, "a") as weights:
        weights.attrs[_ARCHITECTURE_ATTRIBUTE] = json.dumps(_architecture(backbone))


def _read_preset_config(config_path):
    """The parsed `config.json`, or a `ValueError` naming the file."""
    try:
        with open(config_path, encoding="utf-8") as f:
            saved = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{config_path}, line {error.lineno} column {error.colno}: not valid JSON "
            f"({error.msg}); the file may be cut short or edited by hand"
        ) from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{config_path}: not UTF-8 text ({error})") from error
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(
            f"{config_path}: expected a JSON object with \"task\" and \"config\" keys, as "
            f"save_to_preset() writes. Received: {str(saved)[:80]}"
        )
    return saved


def _read_architecture_stamp(weights_path):
    """The architecture stamped into the weights file (`None` for files
    saved before stamps existed); a `ValueError` naming the file when it is
    not a readable HDF5 file."""
    import h5py  # Keras' own weights-file dependency.

    try:
        with h5py.File(weights_path, "r") as weights:
            stamp = weights.attrs.get(_ARCHITECTURE_ATTRIBUTE)
    except OSError as error:
        size = os.path.getsize(weights_path)
        raise ValueError(
            f"{weights_path}: not a readable weights file ({size} bytes; empty or cut "
            f"short?): {error}"
        ) from error
    if stamp is None:
        return None
    return json.loads(stamp)


def _check_architecture(config_path, weights_path, backbone, saved_architecture):
    """Raises unless the config's backbone is the one the weights were saved
    with, naming each differing setting."""
    current = json.loads(json.dumps(_architecture(backbone)))
    differing = [
        key for key in sorted(set(current) & set(saved_architecture))
        if current[key] != saved_architecture[key]
    ]
    if differing:
        settings = "; ".join(
            f"`{key}`: {current[key]!r} in the config, {saved_architecture[key]!r} in the "
            "weights"
            for key in differing
        )
        raise ValueError(
            f"{config_path} does not describe the model whose weights are in {weights_path}: "
            f"{settings}. Restore the saved values (the weights fix them)"
        )
