"""Every schedule against its closed form, written here independently in numpy."""

import jax
import numpy as np
import pytest

from jaxdl.errors import ConfigError
from jaxdl.optim import Plateau, available_schedules, schedule

STEPS = np.arange(0, 400)


def evaluate(sched, steps, jit):
    """Schedule values at `steps`, vectorised (one compile) and, for a few, called with Python ints."""
    fn = jax.jit(sched) if jit else sched
    values = np.broadcast_to(np.asarray(fn(np.asarray(steps, np.int32)), np.float64), np.shape(steps))
    for s in steps[:: max(1, len(steps) // 7)]:  # scalar calls agree with the vectorised ones
        np.testing.assert_allclose(float(fn(int(s))), values[list(steps).index(s)], rtol=1e-5, atol=1e-7)
    return values


def close(actual, expected):
    # float32 schedules against float64 references: 1e-7 absolute is ~1 ulp of rates around 0.5.
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def jit(request):
    return request.param


def test_available_lists_all_names():
    assert available_schedules() == sorted(
        ["constant", "step", "multistep", "exponential", "inverse_time", "cosine", "cyclical", "plateau"])


def test_constant(jit):
    close(evaluate(schedule("constant", learning_rate=0.3), STEPS, jit), np.full(len(STEPS), 0.3))


@pytest.mark.parametrize("kw,every", [({"every_epochs": 3, "steps_per_epoch": 20}, 60),
                                      ({"every_steps": 45}, 45)])
def test_step_decay(jit, kw, every):
    got = evaluate(schedule("step", learning_rate=0.1, factor=0.5, **kw), STEPS, jit)
    expected = np.array([0.1 * 0.5 ** (t // every) for t in STEPS])
    close(got, expected)
    assert got[every - 1] == pytest.approx(0.1) and got[every] == pytest.approx(0.05)


@pytest.mark.parametrize("kw,marks", [({"milestones": [2, 5, 7], "steps_per_epoch": 30}, [60, 150, 210]),
                                      ({"milestones_steps": [10, 100, 300]}, [10, 100, 300])])
def test_multistep(jit, kw, marks):
    got = evaluate(schedule("multistep", learning_rate=1.0, factor=0.2, **kw), STEPS, jit)
    expected = np.array([0.2 ** sum(t >= m for m in marks) for t in STEPS])
    close(got, expected)


@pytest.mark.parametrize("spe", [None, 50])
def test_exponential(jit, spe):
    got = evaluate(schedule("exponential", learning_rate=0.2, k=0.3, steps_per_epoch=spe), STEPS, jit)
    t = STEPS / (spe or 1)  # k is per epoch when steps_per_epoch is given, else per step
    close(got, 0.2 * np.exp(-0.3 * t))


@pytest.mark.parametrize("spe", [None, 50])
def test_inverse_time(jit, spe):
    got = evaluate(schedule("inverse_time", learning_rate=0.2, k=0.3, steps_per_epoch=spe), STEPS, jit)
    t = STEPS / (spe or 1)
    close(got, 0.2 / (1 + 0.3 * t))


def sgdr_reference(t, *, lr, min_lr, warmup, cycles):
    """Linear warmup from 0, then SGDR (Loshchilov & Hutter 2017, eq. 5) over the given cycle lengths."""
    if t < warmup:
        return lr * t / warmup
    t_cur = t - warmup
    for length in cycles:
        if t_cur < length:
            return min_lr + 0.5 * (lr - min_lr) * (1 + np.cos(np.pi * t_cur / length))
        t_cur -= length
    return min_lr


@pytest.mark.parametrize("kw,warmup,cycles", [
    ({"total_steps": 300}, 0, [300]),
    ({"total_steps": 300, "warmup_steps": 20, "min_lr": 0.01}, 20, [280]),
    ({"total_steps": 300, "warmup_epochs": 2, "steps_per_epoch": 15, "min_lr": 0.01}, 30, [270]),
    # SGDR: T_0 = 10, T_mult = 2: cycles of 10, 20, 40, 80 steps after 5 warmup steps.
    ({"total_steps": 155, "warmup_steps": 5, "restarts": 3, "cycle_mult": 2.0}, 5, [10, 20, 40, 80]),
    ({"total_steps": 300, "restarts": 2, "min_lr": 0.02}, 0, [100, 100, 100]),
])
def test_cosine_with_warmup_and_restarts(jit, kw, warmup, cycles):
    got = evaluate(schedule("cosine", learning_rate=0.5, **kw), STEPS, jit)
    min_lr = kw.get("min_lr", 0.0)
    expected = [sgdr_reference(t, lr=0.5, min_lr=min_lr, warmup=warmup, cycles=cycles) for t in STEPS]
    close(got, expected)
    if len(cycles) > 1:  # a warm restart jumps back to the peak rate
        first_restart = warmup + cycles[0]
        assert got[first_restart - 1] < 0.05 and got[first_restart] == pytest.approx(0.5)


def clr_reference(t, *, mode, base, peak, half, gamma=1.0):
    """Triangle wave written by position in the cycle (Smith 2017, fig. 2 and sec. 3.1)."""
    period = 2 * half
    c, p = divmod(t, period)  # c: 0-based cycle index, p: position inside it
    rise = p / half if p < half else 2 - p / half
    amplitude = {"triangular": 1.0, "triangular2": 0.5 ** c, "exp_range": gamma ** t}[mode]
    return base + (peak - base) * rise * amplitude


@pytest.mark.parametrize("mode,extra", [("triangular", {}), ("triangular2", {}),
                                        ("exp_range", {"gamma": 0.995})])
def test_cyclical_modes(jit, mode, extra):
    got = evaluate(schedule("cyclical", learning_rate=0.6, base_lr=0.1, step_size=25, mode=mode, **extra),
                   STEPS, jit)
    expected = [clr_reference(t, mode=mode, base=0.1, peak=0.6, half=25, **extra) for t in STEPS]
    close(got, expected)


def test_cyclical_defaults_documented():
    # max_lr = learning_rate, base_lr = max_lr / 4, step_size = 4 epochs when steps_per_epoch is known.
    got = evaluate(schedule("cyclical", learning_rate=0.4, steps_per_epoch=10), STEPS, jit=False)
    close(got, [clr_reference(t, mode="triangular", base=0.1, peak=0.4, half=40) for t in STEPS])


def test_plateau_returns_settings():
    p = schedule("plateau", learning_rate=0.1, patience=3, factor=0.5, cooldown=2, min_lr=1e-3,
                 threshold=0.01, steps_per_epoch=100, total_steps=1000)
    assert p == Plateau(learning_rate=0.1, factor=0.5, patience=3, threshold=0.01, cooldown=2, min_lr=1e-3)


@pytest.mark.parametrize("name,kw,needle", [
    ("cosinus", {"learning_rate": 0.1}, "'cosine'"),
    ("step", {"learning_rate": 0.1}, "every_epochs"),
    ("step", {"learning_rate": 0.1, "every_epochs": 3}, "steps_per_epoch"),
    ("step", {"learning_rate": 0.1, "every_epochs": 3, "every_steps": 4}, "not both"),
    ("step", {"learning_rate": 0.1, "every_step": 4}, "every_steps"),  # typo: options listed
    ("cosine", {"learning_rate": 0.1}, "total_steps"),
    ("cosine", {"learning_rate": 0.1, "total_steps": 10, "warmup_steps": 10}, "shorter"),
    ("cosine", {"learning_rate": 0.1, "total_steps": 3, "restarts": 5}, "restarts"),
    ("cosine", {"learning_rate": 0.1, "total_steps": 30, "min_lr": 0.5}, "min_lr"),
    ("multistep", {"learning_rate": 0.1, "milestones": [5, 3], "steps_per_epoch": 2}, "increasing"),
    ("multistep", {"learning_rate": 0.1, "milestones": [3, 5]}, "steps_per_epoch"),
    ("multistep", {"learning_rate": 0.1}, "milestones"),
    ("exponential", {"learning_rate": 0.1}, "k="),
    ("inverse_time", {"learning_rate": 0.1, "k": -1.0}, "k must be"),
    ("cyclical", {"learning_rate": 0.1}, "step_size"),
    ("cyclical", {"learning_rate": 0.1, "step_size": 5, "mode": "exp_range"}, "gamma"),
    ("cyclical", {"learning_rate": 0.1, "step_size": 5, "gamma": 0.9}, "exp_range"),
    ("cyclical", {"learning_rate": 0.1, "step_size": 5, "mode": "sine"}, "triangular2"),
    ("plateau", {"learning_rate": 0.1, "factor": 1.5}, "factor"),
    ("plateau", {"learning_rate": 0.1, "patience": -1}, "patience"),
    ("plateau", {"learning_rate": 0.1, "mode": "max"}, "cooldown"),  # unknown option: valid ones listed
    ("constant", {"learning_rate": -0.1}, ">= 0"),
    ("constant", {}, "learning_rate"),
    ("constant", {"learning_rate": 0.1, "steps_per_epoch": 0}, "steps_per_epoch"),
])
def test_bad_config_raises_config_error(name, kw, needle):
    with pytest.raises(ConfigError, match=None) as info:
        schedule(name, **kw)
    assert needle in str(info.value), str(info.value)


def test_unknown_name_lists_all_schedules():
    with pytest.raises(ConfigError) as info:
        schedule("warmup", learning_rate=0.1)
    for name in available_schedules():
        assert name in str(info.value)


@pytest.mark.parametrize("name,kw", [
    ("constant", {}), ("step", {"every_steps": 5}), ("multistep", {"milestones_steps": [3]}),
    ("exponential", {"k": 0.1}), ("inverse_time", {"k": 0.1}), ("cosine", {}),
    ("cyclical", {"step_size": 5}), ("plateau", {}),
])
def test_every_schedule_accepts_the_common_options(name, kw):
    schedule(name, learning_rate=0.1, steps_per_epoch=10, total_steps=100, **kw)
