"""Tutorial 8: scaling up -- XLA, mixed precision, length bucketing,
tf.distribute, TPUs, and standard datasets from tensorflow-datasets.

Each section measures its effect on this machine with a small generator, so
you can see what to switch on where you train.

Run: python tutorials/08_scaling_up.py --out tutorial_output/08
     (add --tfds-download to read real IMDB reviews instead of mock data)
"""

import os
import time

# tf.distribute needs its devices set before TensorFlow starts: split this
# machine's CPU into two logical devices so MirroredStrategy has two replicas
# to mirror over, as it would have two GPUs.
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import parse_args, save  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from keras_attn.data import bucketed_batches, load_builtin  # noqa: E402
from keras_attn.models import Generator  # noqa: E402
from keras_attn.recipes.distribution import make_strategy  # noqa: E402

args = parse_args(__doc__.splitlines()[0], "tutorial_output/08",
                  [("--tfds-download", "read real IMDB reviews (needs the internet)")])
keras.utils.set_random_seed(0)
steps = 5 if args.quick else 40
length = 64 if args.quick else 128
texts = load_builtin("alphabet_runs", "train", num_examples=2000).texts
texts = [(text * 20)[: int(n)] for text, n in
         zip(texts, np.random.default_rng(0).integers(4, length, len(texts)))]


def step_milliseconds(model, dataset):
    """Median milliseconds of a train step, after a first epoch that compiles."""
    timer = _StepTimer()
    model.fit(dataset.take(steps), epochs=2, verbose=0, callbacks=[timer])
    return 1000 * float(np.median(timer.seconds[steps:]))


class _StepTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def generator(dtype=None):
    return Generator.from_preset("tiny", sequence_length=length, hidden_dim=128,
                                 intermediate_dim=512, dtype=dtype)


timings = {}

# --- 1. XLA ----------------------------------------------------------------------------
# compile(jit_compile=True) fuses each train step into one XLA program. It
# needs static shapes: make_dataset gives every batch the same shape. The
# default, "auto", turns it on with a GPU or TPU, and on a CPU for models up
# to 128 wide (this one), where it measured faster than TensorFlow's kernels.
for jit in (False, True):
    model = generator()
    model.compile(jit_compile=jit)
    timings[f"float32, XLA {'on' if jit else 'off'}"] = step_milliseconds(
        model, model.make_dataset(texts, batch_size=16))

# --- 2. Mixed precision -------------------------------------------------------------------
# "mixed_bfloat16" computes in bfloat16 and keeps float32 weights; the tasks
# keep softmax, losses and logits in float32. CPUs with AMX (and TPUs, and
# recent GPUs) run bfloat16 matmuls several times faster than float32.
model = generator(dtype="mixed_bfloat16")
model.compile()  # "auto": no XLA on a CPU for a bfloat16 model this wide (slower measured)
label = f"mixed_bfloat16, XLA {'on' if model.jit_compile else 'off'}"
timings[label] = step_milliseconds(model, model.make_dataset(texts, batch_size=16))

# --- 3. Length bucketing -------------------------------------------------------------------
# These texts have lengths spread from 4 to the maximum: padding every batch
# to the longest wastes most of the work. Bucketing groups texts of similar
# length into a few static shapes, so XLA compiles once per bucket.
model = generator()
model.compile()
token_ids, target_ids, weights = (np.asarray(part) for part in model.preprocessor(texts))
lengths = (token_ids != model.tokenizer.pad_id).sum(axis=1)
boundaries = [length // 4, length // 2, length]
bucketed = bucketed_batches((token_ids, target_ids, weights), lengths, boundaries, batch_size=16)
timings[f"XLA {'on' if model.jit_compile else 'off'}, bucketed by length"] = step_milliseconds(
    model, bucketed.repeat())
print("padding share without buckets:",
      f"{1 - lengths.sum() / (len(lengths) * length):.0%} of positions")

# --- 4. tf.distribute -------------------------------------------------------------------------
# Build and compile inside a strategy's scope; the batch you give is the
# global batch, split across replicas. `keras-attn train --strategy mirrored`
# does this for recipes (and `multi_worker`, `tpu`). Here the two replicas
# are the two logical CPUs made above, which share the same cores, so expect
# no speed-up -- only the same training, mirrored.
strategy = make_strategy("mirrored")
print("replicas:", strategy.num_replicas_in_sync)
with strategy.scope():
    model = generator()
    model.compile(jit_compile=False)  # XLA cannot reach the other logical CPU's variables
history = model.fit(model.make_dataset(texts, batch_size=16).take(steps), epochs=1, verbose=0)
loss = history.history["loss"][0]
print(f"mirrored over {strategy.num_replicas_in_sync} replicas: loss {loss:.3f}")

# --- 5. TPUs ------------------------------------------------------------------------------------
# `keras-attn train --strategy tpu` builds a TPUStrategy from the cluster
# resolver. What a TPU needs is what this project keeps: static batch shapes
# (make_dataset drops a last short batch), every train and decode step under
# jit_compile=True, no Python-side values inside the compiled loops. The
# suite checks it in tests/models/test_static_shapes.py.

# --- 6. Standard datasets ---------------------------------------------------------------------
# keras_attn.data reads tensorflow-datasets: load_tfds_translation,
# load_tfds_classification, load_tfds_text (and recipes' `source: tfds`).
# Downloading needs the internet; without --tfds-download this runs on
# tensorflow-datasets' own mock data, which has the real features.
import tensorflow_datasets as tfds  # noqa: E402

from keras_attn.data import load_tfds_classification  # noqa: E402

if args.tfds_download:
    reviews = load_tfds_classification("imdb_reviews", max_examples=1000, download=True)
else:
    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
        reviews = load_tfds_classification("imdb_reviews")
print(f"{len(reviews)} reviews, labels {reviews.label_names}")

# --- Summary -------------------------------------------------------------------------------------
for name, milliseconds in timings.items():
    print(f"{name:28s} {milliseconds:7.1f} ms per step")
figure, ax = plt.subplots(figsize=(7, 3.5))
ax.barh(list(timings), list(timings.values()), color="tab:blue")
ax.set(xlabel="milliseconds per train step (batch 16)", title="one generator, four settings")
save(figure, args.out, "step_times.png")
with open(os.path.join(args.out, "step_times.txt"), "w") as file:
    file.writelines(f"{name}\t{value:.2f}\n" for name, value in timings.items())
