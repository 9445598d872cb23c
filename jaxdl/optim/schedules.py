"""Learning-rate schedules of the canon as optax schedules (``step -> lr``, jit-able).

``schedule(name, learning_rate=..., steps_per_epoch=..., total_steps=..., **options)``; the step
is the optimizer update count (0 for the first update). Formulas are in docs/optim.md.

    >>> from jaxdl import optim
    >>> lr = optim.schedule("step", learning_rate=0.1, steps_per_epoch=100, every_epochs=30)
    >>> round(float(lr(3000)), 6)  # 30 epochs in: one decay
    0.01
"""

from __future__ import annotations

import difflib
import inspect
import math
from typing import Any, Callable, Sequence

import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.errors import ConfigError
from jaxdl.optim.plateau import Plateau

__all__ = ["schedule", "available_schedules"]

_COMMON = ("learning_rate", "steps_per_epoch", "total_steps")


# ---------------------------------------------------------------------------------------------
# value checks (errors say which schedule, which option, what is expected)

def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) \
        and math.isfinite(float(x))


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _real(name: str, sched: str, value: Any, *, low: float = 0.0, low_open: bool = False,
          high: float | None = None, high_open: bool = False) -> float:
    ok = _is_real(value)
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (
            high is None or (v < high if high_open else v <= high))
    if not ok:
        lo = f"{'(' if low_open else '['}{low}"
        hi = f"{high}{')' if high_open else ']'}" if high is not None else "inf)"
        raise ConfigError(f"schedule {sched!r}: {name} must be a number in {lo}, {hi}, got {value!r}")
    return float(value)


def _count(name: str, sched: str, value: Any, *, minimum: int = 1) -> int:
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"schedule {sched!r}: {name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _to_steps(sched: str, *, epochs_name: str, epochs: Any, steps_name: str, steps: Any,
              steps_per_epoch: int | None, required: bool = True, minimum: int = 1) -> int | None:
    """Resolve an ``X_epochs`` / ``X_steps`` pair to a number of steps."""
    if epochs is not None and steps is not None:
        raise ConfigError(f"schedule {sched!r}: pass either {epochs_name} or {steps_name}, not both")
    if steps is not None:
        return _count(steps_name, sched, steps, minimum=minimum)
    if epochs is not None:
        epochs = _count(epochs_name, sched, epochs, minimum=minimum)
        if steps_per_epoch is None:
            raise ConfigError(f"schedule {sched!r}: {epochs_name} needs steps_per_epoch=... to be "
                              f"turned into steps (or pass {steps_name} instead)")
        return epochs * steps_per_epoch
    if required:
        raise ConfigError(f"schedule {sched!r} needs {epochs_name}=... (with steps_per_epoch) "
                          f"or {steps_name}=...")
    return None


def _as_float(step) -> jnp.ndarray:
    return jnp.asarray(step, jnp.float32)


# ---------------------------------------------------------------------------------------------
# the schedules; each takes the three common options plus its own (all keyword-only)

def _constant(*, learning_rate, steps_per_epoch, total_steps):
    """lr(t) = learning_rate."""
    del steps_per_epoch, total_steps
    return optax.constant_schedule(learning_rate)


def _step(*, learning_rate, steps_per_epoch, total_steps, factor=0.1, every_epochs=None,
          every_steps=None):
    """lr(t) = learning_rate * factor ** floor(t / every), every = every_epochs * steps_per_epoch."""
    del total_steps
    factor = _real("factor", "step", factor, low_open=True)
    every = _to_steps("step", epochs_name="every_epochs", epochs=every_epochs, steps_name="every_steps",
                      steps=every_steps, steps_per_epoch=steps_per_epoch)
    return optax.exponential_decay(learning_rate, transition_steps=every, decay_rate=factor,
                                   staircase=True)


def _multistep(*, learning_rate, steps_per_epoch, total_steps, milestones=None, milestones_steps=None,
               factor=0.1):
    """lr(t) = learning_rate * factor ** #{m in milestones : t >= m}; milestones in epochs or steps."""
    del total_steps
    factor = _real("factor", "multistep", factor, low_open=True)
    if (milestones is None) == (milestones_steps is None):
        raise ConfigError("schedule 'multistep' needs exactly one of milestones=[epochs ...] (with "
                          "steps_per_epoch) or milestones_steps=[steps ...], e.g. milestones=[30, 60, 80]")
    name, values = ("milestones", milestones) if milestones is not None else ("milestones_steps",
                                                                             milestones_steps)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values or not all(
            _is_int(m) and m >= 1 for m in values):
        raise ConfigError(f"schedule 'multistep': {name} must be a non-empty list of whole numbers >= 1, "
                          f"got {values!r}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ConfigError(f"schedule 'multistep': {name} must be strictly increasing, got {list(values)}")
    if name == "milestones":
        if steps_per_epoch is None:
            raise ConfigError("schedule 'multistep': milestones are in epochs and need steps_per_epoch=... "
                              "(or pass milestones_steps instead)")
        values = [m * steps_per_epoch for m in values]
    # optax applies a scale from the boundary step on (count >= boundary).
    return optax.piecewise_constant_schedule(learning_rate, {int(m): factor for m in values})


def _time_unit(steps_per_epoch):
    return float(steps_per_epoch) if steps_per_epoch is not None else 1.0


def _exponential(*, learning_rate, steps_per_epoch, total_steps, k=None):
    """lr(t) = learning_rate * exp(-k * t); t in epochs (step / steps_per_epoch) if steps_per_epoch
    is given, otherwise in steps; t is continuous (no staircase)."""
    del total_steps
    if k is None:
        raise ConfigError("schedule 'exponential' needs k=... (decay rate per epoch, or per step when "
                          "steps_per_epoch is not given)")
    k = _real("k", "exponential", k)
    unit = _time_unit(steps_per_epoch)
    return lambda step: learning_rate * jnp.exp(-k * (_as_float(step) / unit))


def _inverse_time(*, learning_rate, steps_per_epoch, total_steps, k=None):
    """lr(t) = learning_rate / (1 + k * t); same time unit as 'exponential'."""
    del total_steps
    if k is None:
        raise ConfigError("schedule 'inverse_time' needs k=... (per epoch, or per step when "
                          "steps_per_epoch is not given)")
    k = _real("k", "inverse_time", k)
    unit = _time_unit(steps_per_epoch)
    return lambda step: learning_rate / (1.0 + k * (_as_float(step) / unit))


def _cosine(*, learning_rate, steps_per_epoch, total_steps, warmup_epochs=None, warmup_steps=None,
            min_lr=0.0, restarts=0, cycle_mult=1.0):
    """Linear warmup from 0, then cosine annealing to min_lr (SGDR, Loshchilov & Hutter 2017)."""
    if total_steps is None:
        raise ConfigError("schedule 'cosine' needs total_steps=... (number of updates of the whole run)")
    total = _count("total_steps", "cosine", total_steps)
    min_lr = _real("min_lr", "cosine", min_lr, high=learning_rate)
    warmup = _to_steps("cosine", epochs_name="warmup_epochs", epochs=warmup_epochs,
                       steps_name="warmup_steps", steps=warmup_steps, steps_per_epoch=steps_per_epoch,
                       required=False, minimum=0) or 0
    if warmup >= total:
        raise ConfigError(f"schedule 'cosine': warmup ({warmup} steps) must be shorter than "
                          f"total_steps ({total})")
    restarts = _count("restarts", "cosine", restarts, minimum=0)
    cycle_mult = _real("cycle_mult", "cosine", cycle_mult, low=1.0)
    # Cycle i lasts T_0 * cycle_mult**i; the restarts + 1 cycles fill the steps after warmup. Ends
    # are rounded to whole steps (the last one is exactly total_steps).
    weights = np.asarray([cycle_mult ** i for i in range(restarts + 1)], np.float64)
    ends = warmup + np.rint(np.cumsum(weights) / weights.sum() * (total - warmup)).astype(int)
    ends[-1] = total
    starts = np.concatenate([[warmup], ends[:-1]])
    lengths = ends - starts
    if (lengths < 1).any():
        raise ConfigError(f"schedule 'cosine': {restarts} restarts do not fit in {total - warmup} steps "
                          f"after warmup (cycle lengths {lengths.tolist()}); use fewer restarts")
    alpha = min_lr / learning_rate if learning_rate > 0 else 0.0
    pieces, boundaries = [], []
    if warmup:
        pieces.append(optax.linear_schedule(0.0, learning_rate, warmup))
        boundaries.append(warmup)
    for length in lengths:
        pieces.append(optax.cosine_decay_schedule(learning_rate, int(length), alpha=alpha))
    boundaries.extend(int(s) for s in starts[1:])
    return optax.join_schedules(pieces, boundaries) if len(pieces) > 1 else pieces[0]


_CYCLICAL_MODES = ("triangular", "triangular2", "exp_range")


def _cyclical(*, learning_rate, steps_per_epoch, total_steps, mode="triangular", base_lr=None,
              max_lr=None, step_size=None, step_size_epochs=None, gamma=None):
    """Cyclical learning rates (Smith, "Cyclical Learning Rates for Training Neural Networks",
    WACV 2017 / arXiv:1506.01186): a triangle between base_lr and max_lr, half-period step_size."""
    del total_steps
    if mode not in _CYCLICAL_MODES:
        raise ConfigError(f"schedule 'cyclical': unknown mode {mode!r}; valid modes: "
                          f"{', '.join(_CYCLICAL_MODES)}")
    max_lr = learning_rate if max_lr is None else _real("max_lr", "cyclical", max_lr)
    # Smith 2017 sec. 3.3: the lower bound a factor 3 or 4 below the upper one.
    base_lr = max_lr / 4.0 if base_lr is None else _real("base_lr", "cyclical", base_lr, high=max_lr)
    if step_size is None and step_size_epochs is None and steps_per_epoch is not None:
        # Smith 2017 sec. 3.3: step size of 2-10 epochs; 4 is in the middle of the range.
        step_size_epochs = 4
    try:
        half = _to_steps("cyclical", epochs_name="step_size_epochs", epochs=step_size_epochs,
                         steps_name="step_size", steps=step_size, steps_per_epoch=steps_per_epoch)
    except ConfigError as e:
        raise ConfigError(f"{e} (the half-cycle length; Smith recommends 2-10 epochs)") from None
    if mode == "exp_range":
        if gamma is None:
            raise ConfigError("schedule 'cyclical' with mode='exp_range' needs gamma=... (amplitude is "
                              "multiplied by gamma**step, e.g. gamma=0.99994)")
        gamma = _real("gamma", "cyclical", gamma, low_open=True, high=1.0)
    elif gamma is not None:
        raise ConfigError(f"schedule 'cyclical': gamma only applies to mode='exp_range', not {mode!r}")

    def cyclical(step):
        t = _as_float(step)
        cycle = jnp.floor(1.0 + t / (2.0 * half))
        x = jnp.abs(t / half - 2.0 * cycle + 1.0)
        amplitude = (max_lr - base_lr) * jnp.maximum(0.0, 1.0 - x)
        if mode == "triangular2":
            amplitude = amplitude / 2.0 ** (cycle - 1.0)
        elif mode == "exp_range":
            amplitude = amplitude * gamma ** t
        return base_lr + amplitude

    return cyclical


def _plateau(*, learning_rate, steps_per_epoch, total_steps, factor=0.1, patience=10, threshold=1e-4,
             cooldown=0, min_lr=0.0):
    """Reduce-on-plateau (see jaxdl.optim.plateau); returns the settings, not a step function."""
    del steps_per_epoch, total_steps
    return Plateau(learning_rate=learning_rate, factor=factor, patience=patience, threshold=threshold,
                   cooldown=cooldown, min_lr=min_lr)


_SCHEDULES: dict[str, Callable[..., Any]] = {
    "constant": _constant,
    "step": _step,
    "multistep": _multistep,
    "exponential": _exponential,
    "inverse_time": _inverse_time,
    "cosine": _cosine,
    "cyclical": _cyclical,
    "plateau": _plateau,
}


def available_schedules() -> list[str]:
    """Names accepted by :func:`schedule`."""
    return sorted(_SCHEDULES)


def _options(name: str) -> list[str]:
    params = inspect.signature(_SCHEDULES[name]).parameters
    return [p for p in params if p not in _COMMON]


def schedule(name: str, *, learning_rate=None, steps_per_epoch: int | None = None,
             total_steps: int | None = None, **options: Any):
    """Build the learning-rate schedule ``name``.

    Args:
      name: one of :func:`available_schedules`.
      learning_rate: the base (peak) rate ``a0``; a number >= 0.
      steps_per_epoch: updates per epoch; needed by options given in epochs, and makes
        ``k`` of 'exponential'/'inverse_time' a rate per epoch.
      total_steps: updates in the whole run (needed by 'cosine').
      **options: the schedule's own options (listed in docs/optim.md); any other name is an error.

    Returns:
      a jit-able ``step -> lr`` function (``step``: <int>[] update count, from 0), or a
      :class:`Plateau` for ``"plateau"`` (pass it as ``learning_rate`` of ``optimizer``).

    Raises:
      ConfigError: unknown name, unknown option, missing or bad value.
    """
    if name not in _SCHEDULES:
        close = difflib.get_close_matches(str(name), list(_SCHEDULES), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ConfigError(f"unknown schedule {name!r}{hint}; valid schedules: "
                          f"{', '.join(available_schedules())}")
    valid = _options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"schedule {name!r} has no option {', '.join(map(repr, unknown))}; its options "
                          f"are: {', '.join(valid) or '(none)'} (plus {', '.join(_COMMON)})")
    if learning_rate is None:
        raise ConfigError(f"schedule {name!r} needs learning_rate=... (the base rate)")
    if not _is_real(learning_rate) or learning_rate < 0:
        raise ConfigError(f"schedule {name!r}: learning_rate must be a number >= 0, got {learning_rate!r}")
    if steps_per_epoch is not None:
        steps_per_epoch = _count("steps_per_epoch", name, steps_per_epoch)
    if total_steps is not None:
        total_steps = _count("total_steps", name, total_steps)
    return _SCHEDULES[name](learning_rate=float(learning_rate), steps_per_epoch=steps_per_epoch,
                            total_steps=total_steps, **options)
