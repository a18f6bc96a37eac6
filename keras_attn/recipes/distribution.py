"""`training.strategy`: the `tf.distribute` strategy a recipe trains under.

- `default`: one device (TensorFlow's default strategy).
- `mirrored`: `tf.distribute.MirroredStrategy` over every GPU of this
  machine, or over every logical CPU device when there is no GPU (so
  `tf.config.set_logical_device_configuration` can split a CPU in tests).
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy` over the
  machines the `TF_CONFIG` environment variable lists; run the same command
  on each of them. Only the chief writes the run's output directory; the other
  workers keep theirs under `OUTPUT_DIR/workers/<task>_<index>/` (their own
  backup, so a rerun resumes every worker at the same epoch) and delete it
  once finished.
- `tpu`: `tf.distribute.TPUStrategy` on the TPU that
  `tf.distribute.cluster_resolver.TPUClusterResolver` finds (a Cloud TPU VM,
  or the one the `TPU_NAME` environment variable names).

The recipe's `training.batch_size` is the global batch: each step splits it
across the replicas (`batch_size / num_replicas` examples each).
"""

import json
import os

import tensorflow as tf

from keras_attn.utils.arguments import check_choice

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
WORKERS_DIR = "workers"


def _check_tf_config():
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError(
            "training.strategy multi_worker: the TF_CONFIG environment variable is not set; "
            "it must list the cluster and this worker, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"training.strategy multi_worker: TF_CONFIG is not valid JSON "
                         f"({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not (
            isinstance(config.get("task"), dict)):
        raise ValueError("training.strategy multi_worker: TF_CONFIG must be a JSON object with "
                         f"`cluster` and `task` mappings (got {text!r})")
    task = config["task"]
    members = config["cluster"].get(task.get("type"))
    if not isinstance(members, list) or not isinstance(task.get("index"), int) or not (
            0 <= task["index"] < len(members)):
        raise ValueError(
            f"training.strategy multi_worker: TF_CONFIG's task {task!r} is not in its cluster "
            f"{config['cluster']!r}"
        )


def make_strategy(name):
    """The `tf.distribute.Strategy` called `name` (one of `STRATEGIES`).

    Raises:
        ValueError: an unknown name, `multi_worker` without a usable
            `TF_CONFIG`, or `tpu` where no TPU can be reached (one line).

    Example:
    >>> make_strategy("default").num_replicas_in_sync
    1
    """
    check_choice("training.strategy", name, STRATEGIES, show=str)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "")
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except Exception as error:  # noqa: BLE001 - TensorFlow raises many kinds here
        first = " ".join(str(error).split())[:200] or type(error).__name__
        raise ValueError(f"training.strategy tpu: no TPU could be reached ({first})") from None


def worker_role(strategy):
    """`(is_chief, name)` of this process in `strategy`'s cluster: the chief
    (or worker 0 of a cluster without one) writes the results; `name` is
    e.g. `"worker_1"`, or `None` outside a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or task_type is None:
        return True, None
    task_id = resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return chief, f"{task_type}_{task_id}"
