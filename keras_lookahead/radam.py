"""RAdam (Liu et al., 2020) as a Keras 3 optimizer, and Ranger = Lookahead(RAdam).

Keras 3 has no RAdam, and the most common use of TF Addons' Lookahead wrapped TF Addons'
`RectifiedAdam` ("Ranger"). This module lets those users migrate: `RAdam` takes the arguments of
`tfa.optimizers.RectifiedAdam` that change the update, and `Ranger` returns the Lookahead around
it with TF Addons' documented pairing.
"""

import math
import numbers

import keras
from keras import ops

from keras_lookahead import _keras_compat as compat
from keras_lookahead import adaptive
from keras_lookahead import inner_state
from keras_lookahead.lookahead import Lookahead


@keras.saving.register_keras_serializable(package="keras_lookahead")
class RAdam(keras.optimizers.Optimizer):
    """Rectified Adam: Adam whose adaptive step is switched on as its variance estimate firms up.

    In its first steps Adam's second moment v is an average of a few squared gradients, and the
    adaptive learning rate 1/√v has a large variance. RAdam measures it through the length ρ_t
    of the simple moving average that v approximates, ρ_t = ρ_∞ − 2 t β₂ᵗ / (1 − β₂ᵗ) with
    ρ_∞ = 2 / (1 − β₂) − 1, and (Liu et al., 2020, Algorithm 2), with m̂ and v̂ the
    bias-corrected moments:

        while ρ_t < sma_threshold:  θ ← θ − lr · m̂                 (SGD with momentum)
        afterwards:                 θ ← θ − lr · r_t · m̂ / (√v̂ + ε)
        r_t = √( (ρ_t − 4)(ρ_t − 2) ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2) ρ_t) )

    The paper's threshold is 4 (r_t is only defined above it); TF Addons' `RectifiedAdam`, and
    this class by default, use 5. With β₂ = 0.999 the adaptive step starts at step 6.

    With `total_steps > 0` the learning rate is also scheduled as in TF Addons: a linear warm-up
    from 0 to `learning_rate` over the first `warmup_proportion · total_steps` steps, then a
    linear decay to `min_lr` at `total_steps`, constant after. The factor applies on top of
    `learning_rate` (itself a float or a schedule).

    Args:
        learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
        beta_1: decay rate of the first moment (momentum).
        beta_2: decay rate of the second moment.
        epsilon: added to √v̂ (TF Addons' default, 1e-7).
        sma_threshold: the ρ_t from which the adaptive step is used (TF Addons: 5).
        total_steps: with a value > 0, the warm-up and decay schedule above.
        warmup_proportion: the fraction of `total_steps` spent warming up, in [0, 1].
        min_lr: the learning rate reached at `total_steps`.
        **kwargs: `amsgrad=False` (TF Addons' default; `True` is refused, AMSGrad is not
            supported), and the options of every Keras optimizer (`weight_decay`, `clipnorm`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...). Weight decay is
            Keras's decoupled one (θ ← θ − lr · weight_decay · θ before the update, with
            `learning_rate` without the `total_steps` factor); TF Addons added it to the
            update itself, scaled by the scheduled rate.

    Example:

    ```python
    # before: tfa.optimizers.RectifiedAdam(1e-3, total_steps=10000, warmup_proportion=0.1)
    optimizer = keras_lookahead.RAdam(1e-3, total_steps=10000, warmup_proportion=0.1)
    ```

    References:
        - [Liu, Jiang, He, Chen, Liu, Gao & Han, 2020. On the Variance of the Adaptive
          Learning Rate and Beyond. ICLR.](https://arxiv.org/abs/1908.03265)
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        sma_threshold=5.0,
        total_steps=0,
        warmup_proportion=0.1,
        min_lr=0.0,
        name="radam",
        **kwargs,
    ):
        # TF Addons' RectifiedAdam has amsgrad=False; code migrated with it passes it explicitly
        if "amsgrad" in kwargs and kwargs.pop("amsgrad") is not False:
            raise ValueError(
                "RAdam: amsgrad is not supported (only amsgrad=False, TF Addons' default, is "
                "accepted): this RAdam keeps the second moment as Adam does, not its running "
                "maximum.")
        for arg, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not _is_number(value) or not 0 <= value < 1:
                raise ValueError(f"RAdam: {arg} must be a number in [0, 1), got {value!r}.")
        if not _is_number(epsilon) or epsilon < 0:
            raise ValueError(f"RAdam: epsilon must be a number >= 0, got {epsilon!r}.")
        if not _is_number(sma_threshold) or not 4 <= sma_threshold:
            raise ValueError(
                "RAdam: sma_threshold must be a number >= 4 (the rectification r_t is defined "
                f"above 4), got {sma_threshold!r}.")
        if (isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral)
                or total_steps < 0):
            raise ValueError(
                f"RAdam: total_steps must be an integer >= 0 (0: no schedule), got "
                f"{total_steps!r}.")
        if not _is_number(warmup_proportion) or not 0 <= warmup_proportion <= 1:
            raise ValueError(
                f"RAdam: warmup_proportion must be a number in [0, 1], got "
                f"{warmup_proportion!r}.")
        if not _is_number(min_lr) or min_lr < 0:
            raise ValueError(f"RAdam: min_lr must be a number >= 0, got {min_lr!r}.")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.sma_threshold = float(sma_threshold)
        self.total_steps = int(total_steps)
        self.warmup_proportion = float(warmup_proportion)
        self.min_lr = float(min_lr)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]
        self._velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]

    def _scheduled(self, learning_rate, t):
        """TF Addons' warm-up and linear decay, at step t (1-based)."""
        if self.total_steps <= 0:
            return learning_rate
        warmup = self.total_steps * self.warmup_proportion
        decay_steps = max(self.total_steps - warmup, 1.0)
        falling = ops.add(learning_rate, ops.multiply(
            ops.divide(ops.subtract(self.min_lr, learning_rate), decay_steps),
            ops.minimum(ops.subtract(t, warmup), decay_steps)))
        if warmup == 0:
            return falling
        rising = ops.multiply(learning_rate, ops.divide(t, warmup))
        return ops.where(ops.less_equal(t, warmup), rising, falling)

    def update_step(self, gradient, variable, learning_rate):
        index = compat.variable_index(self, variable)
        m, v = self._momentums[index], self._velocities[index]
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        # The per-step scalars in float32 whatever the variable's dtype: a bfloat16 step count
        # stops at 256.
        t = ops.cast(self.iterations + 1, "float32")
        m_correction = ops.subtract(1.0, ops.power(self.beta_1, t))
        v_correction = ops.subtract(1.0, ops.power(self.beta_2, t))
        lr = self._scheduled(ops.cast(learning_rate, "float32"), t)
        rho = _sma_length(t, self.beta_2)
        rho_inf = 2.0 / (1.0 - self.beta_2) - 1.0
        above = ops.maximum(rho, 4.0)  # r_t is real above 4 only; the other branch is taken
        r = ops.sqrt(ops.divide(
            ops.multiply(ops.multiply(ops.subtract(above, 4.0), ops.subtract(above, 2.0)),
                         rho_inf),
            ops.multiply((rho_inf - 4.0) * (rho_inf - 2.0), above)))
        adaptive = ops.greater_equal(rho, self.sma_threshold)

        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        m_hat = ops.divide(m, ops.cast(m_correction, dtype))
        v_hat = ops.sqrt(ops.divide(v, ops.cast(v_correction, dtype)))
        adaptive_step = ops.divide(ops.multiply(ops.cast(r, dtype), m_hat),
                                   ops.add(v_hat, self.epsilon))
        step = ops.where(adaptive, adaptive_step, m_hat)
        self.assign_sub(variable, ops.multiply(ops.cast(lr, dtype), step))

    def get_config(self):
        config = super().get_config()
        config.update({
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "sma_threshold": self.sma_threshold,
            "total_steps": self.total_steps,
            "warmup_proportion": self.warmup_proportion,
            "min_lr": self.min_lr,
        })
        return config


def _sma_length(t, beta_2):
    """ρ_t = ρ_∞ − 2 t β₂ᵗ / (1 − β₂ᵗ), accurate in float32.

    Written as it is, the formula subtracts two numbers near ρ_∞ (1999 for β₂ = 0.999) and loses
    ~0.04 in float32, enough to move r_t by 1% and the threshold test by a step. With
    ℓ = −ln β₂ and u = ℓt, 2t/(e^u − 1) = 2/ℓ − t + (2/ℓ) h(u), h(u) = u/(e^u − 1) − 1 + u/2, so

        ρ_t = (ρ_∞ − 2/ℓ) + t − (2/ℓ) h(u),

    the constant computed in float64 here, and h from its Taylor series (Bernoulli numbers) for
    u < 1, where the direct form would cancel, and directly above. Error: ~1e-5 relative.
    """
    ell = -math.log(beta_2) if beta_2 > 0 else math.inf
    if not math.isfinite(ell):  # β₂ = 0: ρ_t = 1 at every step (v is the last g² alone)
        return ops.ones_like(t)
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    u = ops.multiply(ell, t)
    small = ops.minimum(u, 1.0)
    small2 = ops.square(small)
    series = ops.multiply(small2, 1 / 12 + small2 * (-1 / 720 + small2 * (
        1 / 30240 + small2 * (-1 / 1209600))))
    large = ops.maximum(u, 1.0)
    direct = ops.add(ops.subtract(ops.divide(large, ops.expm1(large)), 1.0),
                     ops.multiply(large, 0.5))
    h = ops.where(ops.less(u, 1.0), series, direct)
    return ops.subtract(ops.add(rho_inf - 2.0 / ell, t), ops.multiply(2.0 / ell, h))


def _is_number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


# Lookahead's inner_state policies act on the first moments, and its adaptive α reads the
# bias-corrected second moments: both are declared for RAdam as for Keras's Adam.
inner_state.register_first_moments(RAdam, "_momentums")
adaptive.register_second_moments(RAdam, "_velocities", "beta_2")


def Ranger(learning_rate=0.001, sync_period=6, slow_step_size=0.5, inner_state="maintain",
           **radam_kwargs):
    """Ranger: Lookahead around RAdam, as TF Addons documented it.

    TF Addons' recipe was `tfa.optimizers.Lookahead(tfa.optimizers.RectifiedAdam(...),
    sync_period=6, slow_step_size=0.5)`; this returns the same pairing,
    `Lookahead(RAdam(learning_rate, **radam_kwargs), sync_period, slow_step_size)`. Note that
    its k is TF Addons' 6, not the paper's 5 that `Lookahead` defaults to.

    Args:
        learning_rate: RAdam's learning rate (a float or a schedule).
        sync_period: Lookahead's k.
        slow_step_size: Lookahead's α.
        inner_state: Lookahead's policy for RAdam's momentum at a sync.
        **radam_kwargs: the other arguments of `RAdam` (`total_steps`, `warmup_proportion`,
            `min_lr`, `weight_decay`, ...).

    Example:

    ```python
    # before: tfa.optimizers.Lookahead(tfa.optimizers.RectifiedAdam(1e-3), 6, 0.5)
    model.compile(optimizer=keras_lookahead.Ranger(1e-3), loss="mse")
    ```
    """
    return Lookahead(RAdam(learning_rate, **radam_kwargs), sync_period=sync_period,
                     slow_step_size=slow_step_size, inner_state=inner_state)
