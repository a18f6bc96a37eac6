"""Learning-rate schedules for training Transformers."""

import keras
from keras import ops

from keras_attn.utils.arguments import check_positive_int, check_positive_number


@keras.saving.register_keras_serializable(package="keras_attn")
class InverseSquareRootSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then decay with the inverse square root of the step.

    The schedule of "Attention Is All You Need" (Vaswani et al. 2017, eq. 3):

        lr = scale * model_dim^-0.5 * min(step_num^-0.5, step_num * warmup_steps^-1.5)

    `step_num` counts updates from 1, as in the paper. A Keras optimizer calls
    the schedule with its 0-based `iterations`, so `schedule(step)` uses
    `step_num = step + 1`: the first update gets `lr(step_num=1)` rather than
    0, and the peak, `scale * (model_dim * warmup_steps)^-0.5`, is reached at
    `step = warmup_steps - 1`.

    Args:
        model_dim: width of the model's hidden states (`d_model`).
        warmup_steps: number of updates of the linear warmup.
        scale: multiplies the whole schedule.

    Call arguments:
        step: scalar 0-based step (int or float, tensor or Python number).

    Returns:
        Scalar float32 learning rate.

    Example:
    >>> schedule = InverseSquareRootSchedule(model_dim=512, warmup_steps=4000)
    >>> optimizer = keras.optimizers.Adam(schedule, beta_2=0.98, epsilon=1e-9)
    >>> round(float(schedule(3999)), 6)  # the peak
    0.000699
    """

    def __init__(self, model_dim, warmup_steps=4000, scale=1.0):
        super().__init__()
        self.model_dim = check_positive_int("model_dim", model_dim)
        self.warmup_steps = check_positive_int("warmup_steps", warmup_steps)
        self.scale = float(check_positive_number("scale", scale))

    def __call__(self, step):
        step_num = ops.cast(step, "float32") + 1.0
        decay = ops.rsqrt(step_num)
        warmup = step_num * float(self.warmup_steps) ** -1.5
        return self.scale * float(self.model_dim) ** -0.5 * ops.minimum(decay, warmup)

    def get_config(self):
        return {
            "model_dim": self.model_dim,
            "warmup_steps": self.warmup_steps,
            "scale": self.scale,
        }
