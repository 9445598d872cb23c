"""Local response normalization against a direct numpy loop of Krizhevsky et al. 2012, sec. 3.3
(and of torch's ``alpha / size`` convention), including the first and last channels."""

from __future__ import annotations

import chex
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from jaxdl.errors import ConfigError
from jaxdl.nn import LocalResponseNorm, local_response_norm


def lrn_reference(a: np.ndarray, size: int, alpha: float, beta: float, k: float, alpha_over_size: bool) -> np.ndarray:
    """b[c] = a[c] / (k + alpha' * sum_{j in window(c)} a[j]^2)^beta, one channel at a time."""
    a = np.asarray(a, np.float64)
    channels = a.shape[-1]
    out = np.empty_like(a)
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels - 1, c + (size - 1) // 2)
        total = np.zeros(a.shape[:-1])
        for j in range(lo, hi + 1):
            total += a[..., j] ** 2
        scale = alpha / size if alpha_over_size else alpha
        out[..., c] = a[..., c] / (k + scale * total) ** beta
    return out


# Large activations (|a| ~ 30) so that alpha * sum(a^2) is comparable to k and the test sees it.
def _activations(shape, seed=0, scale=30.0):
    return scale * np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("alpha_over_size", [False, True])
@pytest.mark.parametrize("size,channels", [(5, 8), (5, 3), (1, 4), (2, 6), (4, 7), (7, 5)])
def test_matches_numpy_loop(jit, alpha_over_size, size, channels):
    a = _activations((2, 3, 4, channels))
    layer = LocalResponseNorm(size=size, alpha=1e-3, beta=0.75, k=2.0, alpha_over_size=alpha_over_size)
    apply = jax.jit(layer.apply) if jit else layer.apply
    np.testing.assert_allclose(np.asarray(apply({}, jnp.asarray(a))),
                               lrn_reference(a, size, 1e-3, 0.75, 2.0, alpha_over_size), rtol=2e-5, atol=1e-5)


class TestVariants(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_paper_defaults(self):
        a = _activations((1, 2, 2, 16), seed=1)
        fn = self.variant(lambda x: LocalResponseNorm().apply({}, x))
        np.testing.assert_allclose(np.asarray(fn(jnp.asarray(a))), lrn_reference(a, 5, 1e-4, 0.75, 2.0, False),
                                   rtol=2e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_torch_convention(self):
        a = _activations((1, 2, 2, 16), seed=2)
        fn = self.variant(lambda x: local_response_norm(x, 5, 1e-4, 0.75, 1.0, alpha_over_size=True))
        np.testing.assert_allclose(np.asarray(fn(jnp.asarray(a))), lrn_reference(a, 5, 1e-4, 0.75, 1.0, True),
                                   rtol=2e-5, atol=1e-5)


@settings(deadline=None, max_examples=15)
@given(channels=st.integers(1, 12), size=st.integers(1, 9), alpha_over_size=st.booleans(),
       beta=st.floats(0.25, 1.5), k=st.floats(0.5, 3.0), seed=st.integers(0, 100))
def test_matches_numpy_loop_property(channels, size, alpha_over_size, beta, k, seed):
    a = _activations((1, 2, 3, channels), seed=seed)
    got = local_response_norm(jnp.asarray(a), size, 1e-3, beta, k, alpha_over_size)
    np.testing.assert_allclose(np.asarray(got), lrn_reference(a, size, 1e-3, beta, k, alpha_over_size),
                               rtol=5e-5, atol=1e-5)


def test_conventions_differ_by_size():
    """Paper alpha == torch alpha * size; the two flags are not the same formula."""
    a = jnp.asarray(_activations((1, 1, 1, 10), seed=3))
    paper = local_response_norm(a, 5, 1e-4, 0.75, 2.0, alpha_over_size=False)
    torch_same_alpha = local_response_norm(a, 5, 1e-4, 0.75, 2.0, alpha_over_size=True)
    torch_scaled = local_response_norm(a, 5, 5e-4, 0.75, 2.0, alpha_over_size=True)
    assert not np.allclose(paper, torch_same_alpha, rtol=1e-3)
    np.testing.assert_allclose(paper, torch_scaled, rtol=1e-6)


def test_window_is_local_and_clipped_at_the_edges():
    """Channel 0 (size 5) sees channels 0..2 only; channel 3 and beyond do not change it."""
    a = _activations((1, 1, 1, 8), seed=4)
    base = np.asarray(local_response_norm(jnp.asarray(a)))
    far = a.copy()
    far[..., 3:] *= 3.0
    near = a.copy()
    near[..., 2] *= 3.0
    assert np.asarray(local_response_norm(jnp.asarray(far)))[..., 0] == pytest.approx(base[..., 0], rel=1e-7)
    assert np.asarray(local_response_norm(jnp.asarray(near)))[..., 0] != pytest.approx(base[..., 0], rel=1e-4)
    # The last channel likewise sees only the two before it.
    far_last = a.copy()
    far_last[..., :5] *= 3.0
    assert np.asarray(local_response_norm(jnp.asarray(far_last)))[..., 7] == pytest.approx(base[..., 7], rel=1e-7)


def test_keeps_dtype_and_shape_and_has_a_finite_gradient():
    a = jnp.asarray(_activations((2, 3, 3, 6), seed=5))
    out = local_response_norm(a.astype(jnp.bfloat16))
    assert out.dtype == jnp.bfloat16 and out.shape == a.shape
    np.testing.assert_allclose(np.asarray(out, np.float32), lrn_reference(a, 5, 1e-4, 0.75, 2.0, False), rtol=2e-2)
    grad = jax.grad(lambda x: local_response_norm(x).sum())(a)
    assert grad.shape == a.shape and bool(jnp.all(jnp.isfinite(grad)))
    # Zero input: no division by zero (k > 0), gradient 1 / k^beta.
    g0 = jax.grad(lambda x: local_response_norm(x).sum())(jnp.zeros((1, 1, 1, 4)))
    np.testing.assert_allclose(np.asarray(g0), 2.0 ** -0.75, rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{"size": 0}, {"size": 2.5}, {"k": 0.0}])
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        local_response_norm(jnp.ones((1, 1, 1, 4)), **kwargs)
