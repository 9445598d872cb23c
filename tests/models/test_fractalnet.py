"""FractalNet (Larsson et al. 2017): fractal layout, mean joins, local and global drop-path,
single-column evaluation, parameter counts. Numerics run on tiny configurations."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.models.fractalnet import ConvUnit, FractalNet, drop_path_keep, fractal_schedule, mean_join


@pytest.fixture(autouse=True, scope="module")
def _classic_threefry():
    # XLA:CPU (jax 0.10) compiles the partitionable threefry ~2.5 s per distinct random shape; the
    # classic scheme compiles in a fraction of that. No test depends on the random values themselves.
    with jax.threefry_partitionable(False):
        yield


def closed_form_params(channels, num_columns, in_channels=3, num_classes=10):
    """Per block: C convs read the block input, the other 2**C - 1 - C read the block width; BN 2/channel."""
    total, c_in = 0, in_channels
    convs = 2 ** num_columns - 1
    for c in channels:
        total += num_columns * 9 * c_in * c + (convs - num_columns) * 9 * c * c + 2 * c * convs
        c_in = c
    return total + c_in * num_classes + num_classes


def test_default_count_is_the_paper_architecture():
    count = models.count_params("fractalnet")
    assert count == closed_form_params((64, 128, 256, 512, 512), 3) == models.info("fractalnet").num_params
    # The paper's Table 1 states 38.6M for this network; its described architecture has 33.7M.
    assert round(count / 1e5) == 337


def test_schedule_matches_figure1():
    assert fractal_schedule(1) == [(0,)]
    assert fractal_schedule(2) == [(1,), (0, 1)]
    # C=4 (Fig. 1): the deepest column convolves every step, column 2 every 2nd, 1 every 4th, 0 once.
    assert fractal_schedule(4) == [(3,), (2, 3), (3,), (1, 2, 3), (3,), (2, 3), (3,), (0, 1, 2, 3)]


@settings(deadline=None, max_examples=8)
@given(num_columns=st.integers(1, 4), channels=st.lists(st.integers(1, 6), min_size=1, max_size=3))
def test_layout_and_count_property(num_columns, channels):
    size = 2 ** len(channels)
    model = FractalNet(num_columns=num_columns, channels=tuple(channels), dropout_rate=0.0)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    assert sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params)) == \
        closed_form_params(channels, num_columns)
    for b in range(1, len(channels) + 1):
        for c in range(num_columns):
            layers = [n for n in params if n.startswith(f"stage{b}_col{c}_layer")]
            assert len(layers) == 2 ** c  # deepest column: 2**(C-1) convs per block
    assert sum(n.startswith("stage1_") for n in params) == 2 ** num_columns - 1


def test_taps():
    taps = {t.name: t for t in models.feature_info("fractalnet")}
    assert set(taps) == {"stage1", "stage2", "stage3", "stage4", "stage5", "pre_logits", "logits"}
    assert [(taps[f"stage{b}"].channels, taps[f"stage{b}"].stride) for b in range(1, 6)] == \
        [(64, 2), (128, 4), (256, 8), (512, 16), (512, 32)]
    assert taps["pre_logits"].shape == (512,)


# ---- drop-path masks ---------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=(1, 2))
def _local_keep(key, n, k, rate):
    return drop_path_keep(key, tuple(range(k)), jnp.zeros((n,), bool), jnp.zeros((n,), jnp.int32), rate)


@settings(deadline=None, max_examples=12)
@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([1, 50]), k=st.integers(2, 4),
       rate=st.floats(0.0, 1.0))
def test_local_drop_path_never_drops_every_input(seed, n, k, rate):
    keep = np.asarray(_local_keep(jax.random.key(seed), n, k, rate))
    assert keep.shape == (n, k) and keep.any(axis=1).all()
    if rate == 0.0:
        assert keep.all()
    if rate == 1.0:
        assert (keep.sum(axis=1) == 1).all()  # everything dropped, so exactly one is put back


def test_local_drop_rate_is_respected():
    keep = np.asarray(_local_keep(jax.random.key(0), 20000, 3, 0.15))
    # 0.15 per input, less the rows where all three were dropped (0.15**3 = 0.3%) and one came back.
    assert abs((1 - keep.mean()) - 0.15) < 0.01


@settings(deadline=None, max_examples=12)
@given(seed=st.integers(0, 2**31 - 1), columns=st.sampled_from([(1, 2), (0, 1, 2), (2, 3), (0, 1, 2, 3)]))
def test_global_drop_path_keeps_only_the_chosen_column(seed, columns):
    chosen = jnp.arange(4, dtype=jnp.int32)
    keep = np.asarray(drop_path_keep(jax.random.key(seed), columns, jnp.ones((4,), bool), chosen, 0.9))
    for row, c in zip(keep, range(4)):
        if c in columns:
            assert row.tolist() == [col == c for col in columns]
        else:  # a join the chosen column does not take part in: irrelevant to its path, kept well defined
            assert row.all()


def test_mean_join_weights():
    a, b, c = (jnp.full((2, 1, 1, 1), v) for v in (1.0, 2.0, 6.0))
    np.testing.assert_allclose(mean_join([a, b, c]), 3.0)
    keep = jnp.array([[True, False, True], [False, True, False]])
    np.testing.assert_allclose(mean_join([a, b, c], keep)[:, 0, 0, 0], [3.5, 2.0])
    np.testing.assert_allclose(mean_join([a, b, c], keep[:1])[:, 0, 0, 0], [3.5, 3.5])  # one draw for the batch


# ---- the network -------------------------------------------------------------------------------

TINY = dict(num_classes=7, channels=(4, 5), dropout_rate=0.0, frozen_bn=True)


def _variables(x, **overrides):
    """Random variables (numpy, no compile) with non-trivial BN statistics: every unit distinguishable."""
    shapes = jax.eval_shape(FractalNet(**{**TINY, **overrides}).init, jax.random.key(0), x)
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if "var" in name:
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
        scale = 0.3 if "kernel" in name else 0.2
        return jnp.asarray(rng.normal(0.0, scale, leaf.shape), jnp.float32)
    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def three_columns():
    x = jax.random.normal(jax.random.key(2), (16, 4, 4, 3))
    return x, _variables(x, num_columns=3)


@functools.lru_cache(maxsize=None)
def _apply_fn(train, overrides):
    model = FractalNet(**{**TINY, **dict(overrides)})
    return jax.jit(lambda v, x, k: model.apply(v, x, train=train, rngs={"dropout": k}))


def _run(variables, x, *, key=0, train=False, **overrides):
    fn = _apply_fn(train, tuple(sorted(overrides.items())))
    return np.asarray(fn(variables, x, jax.random.key(key)))


def test_block_is_the_fractal_of_figure1(three_columns):
    """Evaluation: stage1 equals f_3 composed by hand from the units, with mean joins and pool-before-join."""
    x, v = three_columns

    def unit(name, h):
        sub = {"params": v["params"][name], "batch_stats": v["batch_stats"][name]}
        return ConvUnit(4).apply(sub, h)

    def pool(h):
        return h.reshape(h.shape[0], h.shape[1] // 2, 2, h.shape[2] // 2, 2, h.shape[3]).max(axis=(2, 4))

    deep = unit("stage1_col2_layer1", unit("stage1_col2_layer0", x))
    j = (deep + unit("stage1_col1_layer0", x)) / 2                   # f_2(x)
    deep = unit("stage1_col2_layer3", unit("stage1_col2_layer2", j))
    middle = unit("stage1_col1_layer1", j)                            # second f_2 ...
    shallow = unit("stage1_col0_layer0", x)
    expected = (pool(deep) + pool(middle) + pool(shallow)) / 3        # ... merged into the 3-input join
    got = FractalNet(num_columns=3, **TINY).apply(v, x, features=("stage1",))["stage1"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_eval_join_is_the_mean_of_the_columns():
    x = jax.random.normal(jax.random.key(3), (4, 4, 4, 3))
    v = _variables(x, num_columns=2)
    model = lambda **kw: FractalNet(num_columns=2, **{**TINY, **kw})
    full = model().apply(v, x, features=("stage1",))["stage1"]
    cols = [model(column=c).apply(v, x, features=("stage1",))["stage1"] for c in (0, 1)]
    assert not np.allclose(cols[0], cols[1])
    np.testing.assert_allclose(full, (cols[0] + cols[1]) / 2, rtol=1e-5, atol=1e-6)


def test_global_drop_path_runs_exactly_one_column(three_columns):
    x, v = three_columns
    columns = [_run(v, x, column=c) for c in range(3)]
    for a in range(3):
        for b in range(a):
            assert not np.allclose(columns[a], columns[b], atol=1e-3)  # distinguishable
    seen = set()
    for key in range(3):
        out = _run(v, x, key=key, train=True, num_columns=3, global_drop_fraction=1.0, local_drop_rate=0.0)
        match = np.stack([np.isclose(out, col, rtol=1e-4, atol=1e-5).all(axis=1) for col in columns], 1)
        assert (match.sum(axis=1) == 1).all()  # every example followed exactly one whole column
        seen |= set(match.argmax(axis=1).tolist())
    assert len(seen) > 1  # per-example draws

    for key in range(3):  # per batch: one column for the whole mini-batch
        out = _run(v, x, key=key, train=True, num_columns=3, global_drop_fraction=1.0, drop_path_per="batch")
        match = np.stack([np.isclose(out, col, rtol=1e-4, atol=1e-5).all(axis=1) for col in columns], 1)
        assert (match.sum(axis=1) == 1).all() and len(set(match.argmax(axis=1).tolist())) == 1


def test_local_drop_path_keeps_one_input_when_all_drop():
    """With drop rate 1 every join keeps exactly one random input: C=2, one block -> one column's output."""
    x = jax.random.normal(jax.random.key(4), (32, 2, 2, 3))
    cfg = dict(num_columns=2, channels=(4,))
    v = _variables(x, **cfg)
    columns = [_run(v, x, column=c, **cfg) for c in (0, 1)]
    out = _run(v, x, train=True, local_drop_rate=1.0, global_drop_fraction=0.0, **cfg)
    match = np.stack([np.isclose(out, col, rtol=1e-4, atol=1e-5).all(axis=1) for col in columns], 1)
    assert np.isfinite(out).all() and (match.sum(axis=1) == 1).all()
    assert match[:, 0].any() and match[:, 1].any()
    # no drop-path at all in training: the plain mean, like evaluation
    np.testing.assert_allclose(_run(v, x, train=True, local_drop_rate=0.0, global_drop_fraction=0.0, **cfg),
                               _run(v, x, **cfg), rtol=1e-5, atol=1e-6)


def test_column_option(three_columns):
    x, v = three_columns
    deepest = FractalNet(num_columns=3, column=-1, **TINY)
    params = jax.eval_shape(deepest.init, jax.random.key(0), x)["params"]
    assert set(params) == {f"stage{b}_col2_layer{i}" for b in (1, 2) for i in range(4)} | {"head"}
    # Same as column=2, trains without drop-path (dropout off here), and takes the full model's variables.
    np.testing.assert_array_equal(_run(v, x, column=-1), _run(v, x, column=2))
    np.testing.assert_allclose(_run(v, x, column=-1, train=True, key=1), _run(v, x, column=-1, train=True, key=2))


def test_dropout_is_per_block():
    x = jax.random.normal(jax.random.key(5), (2, 4, 4, 3))
    v = _variables(x, num_columns=1)
    cfg = dict(num_columns=1, frozen_bn=True, channels=(4, 5), num_classes=7)

    def run(rates, key):
        return FractalNet(dropout_rate=rates, **cfg).apply(v, x, train=True, rngs={"dropout": jax.random.key(key)},
                                                            features=("stage1", "stage2"))
    first = run((0.0, 0.5), 1), run((0.0, 0.5), 2)
    np.testing.assert_array_equal(first[0]["stage1"], first[1]["stage1"])    # block 1: rate 0
    assert not np.allclose(first[0]["stage2"], first[1]["stage2"])           # block 2: rate 0.5


@pytest.mark.parametrize("overrides,shape", [
    (dict(), (1, 16, 16, 3)),                         # five 2x2 pools need >= 32x32
    (dict(dropout_rate=(0.1, 0.2)), (1, 32, 32, 3)),  # one rate per block (5 blocks)
    (dict(column=3), (1, 32, 32, 3)),
    (dict(drop_path_per="epoch"), (1, 32, 32, 3)),
    (dict(local_drop_rate=1.5), (1, 32, 32, 3)),
])
def test_bad_configuration_raises(overrides, shape):
    model = models.create("fractalnet", **overrides)
    with pytest.raises(ConfigError):
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x), jax.ShapeDtypeStruct(shape, jnp.float32))
