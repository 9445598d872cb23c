"""Winograd minimal-filtering convolution F(m x m, 3 x 3) for 3x3, stride-1 convs (fast on XLA:CPU).

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), section 4: an
``m x m`` output tile of a 3x3 correlation is ``A^T [ (G g G^T) * (B^T d B) ] A`` with ``d`` the
``(m + 2) x (m + 2)`` input tile. Over all tiles and channels the elementwise product becomes
``(m + 2)^2`` independent matrix products ``V_k [tiles, Cin] @ U_k [Cin, Cout]``, which XLA:CPU
runs on its tuned GEMM, and the multiplications drop from ``9 m^2`` to ``(m + 2)^2`` per tile and
channel pair: 2.25x fewer for F(2x2, 3x3), 4x fewer for F(4x4, 3x3). The transforms (B, G, A,
the paper's equations 9-11 and section 4.1 for F(4x4, 3x3)) are fixed additions and scalings.

Gradients are JAX's own transpose of this program, so they stay in the Winograd domain: the
kernel gradient is ``dU_k = V_k^T dM_k`` (then ``G^T dU G``), the input gradient ``dV_k = dM_k U_k^T``
followed by the transposed input transform, all matmuls and additions. One piece of that transpose is
written out: the tile extraction's (:func:`_untile`, an overlap-add), which autodiff built as a sum of
zero-padded copies; the input gradient of F(4x4) convs alone got 1.2-2x faster in most runs.
(A custom VJP computing the input gradient as a second Winograd conv with the flipped kernel was
faster on one layer in isolation but slower on the whole ResNet-18 step: 33.9 vs 36.4 img/s,
measured interleaved.)

Accuracy: float32 only. The transforms add rounding: F(2x2, 3x3) stays within about 1e-6 of
``lax.conv_general_dilated`` relative to the output's magnitude, F(4x4, 3x3) within about 2e-5
(tests/nn/test_winograd.py). Half precision keeps the other paths (the transforms' larger
coefficients would cost too much of bfloat16's 8-bit mantissa).

Measured on the 2-core AMD EPYC, batch 64, float32, backward = input + kernel gradient
(``python experiments/conv_cpu.py --repeats 3 --shapes 32x64,16x128,8x256``, docs/conv_cpu_winograd.json):
32x32x64 F(4x4) 133 ms against 197 ms stock XLA (1.49x), 16x16x128 F(4x4) 70 against 77 ms (1.10x),
8x8x256 F(2x2) 54 against 76 ms (1.41x); forwards about equal. On the whole ResNet-18 (CIFAR) step
it raised jaxdl from 24.8 to 34.4 img/s (docs/performance.md). :func:`tile_size` encodes the choice.

Convs with at most 16 output channels (:func:`kernel_grad_only`) use the Winograd domain for the kernel
gradient only (:func:`winograd_kernel_grad_conv2d`): there each of the 36 F(4x4) GEMMs is
``[N*tiles, Cin] x [Cin, 16]`` and the forward pass is bound by writing and reading the transformed tiles,
which a direct conv never materialises, while XLA:CPU's kernel gradient stays the slow case at any width.
Batch 128 at 32x32, forward + backward (``python experiments/conv_cpu.py --batch 128 --shapes
32x32x16,32x16x32,32x32,32x16x64,32x16``, docs/conv_cpu_thin_2.json): 16 -> 16 channels 33.5 ms against
56.3 for all-Winograd, 32 -> 16 88.6 against 108.2; with 32 or 64 output channels neither won consistently
(two runs: the kernel-gradient-only path from 4% slower to 21% faster), so those keep all three products.
On the whole ResNet-20 step (docs/performance.md, "Thin convs") this gave 1.14-1.24x the images/s, about
twice the inference speed and a fifth less compile time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdl.nn._env import switch

__all__ = ["winograd_conv2d", "winograd_kernel_grad_conv2d", "tile_size", "kernel_grad_only", "winograd_enabled"]

# (B^T, G, A^T) for F(m x m, 3 x 3), from the paper (interpolation points 0, 1, -1 (, 2, -2) and infinity).
_MATRICES = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)),
}

_ENABLED = switch("JAXDL_WINOGRAD")


def winograd_enabled() -> bool:
    """True unless the environment says ``JAXDL_WINOGRAD=0`` (read once, when jaxdl.nn is imported)."""
    return _ENABLED


def tile_size(out_hw, cin: int, cout: int, dtype) -> int | None:
    """The tile ``m`` to use for a 3x3 stride-1 conv with this output size, or None for the other paths.

    F(4x4) from 16 output rows and columns up, F(2x2) from 8 (measured faster than F(4x4) there,
    whose 6x6 tiles would be mostly padding), none below 8, for fewer than 16 channels (the matmuls
    would be too thin: RGB stems) or for anything but float32.
    """
    if jnp.dtype(dtype) != jnp.float32 or min(cin, cout) < 16:
        return None
    side = min(out_hw)
    return 4 if side >= 16 else 2 if side >= 8 else None


def kernel_grad_only(cout: int) -> bool:
    """Whether a conv that :func:`tile_size` sends to Winograd should use it for the kernel gradient
    only (:func:`winograd_kernel_grad_conv2d`) rather than for all three products: yes for convs
    with at most 16 output channels (the module docstring has the measurements)."""
    return cout <= 16


def _combine(matrix: np.ndarray, terms: list) -> list:
    """``matrix @ terms`` for a small constant matrix, skipping zeros and unit factors."""
    out = []
    for row in matrix:
        acc = None
        for coef, term in zip(row, terms):
            if coef == 0:
                continue
            t = term if coef == 1 else -term if coef == -1 else term * np.float32(coef)
            acc = t if acc is None else acc + t
        out.append(acc)
    return out


def _tiles(a: jax.Array, axis: int, m: int, count: int) -> list:
    """The ``m + 2`` rows of every tile along ``axis``: entry ``u`` holds ``a[m * t + u]`` for t < count.

    Built from two reshaped slices (no strided gathers): rows ``m t + u`` for u < m and
    ``m (t + 1) + u'`` for u' < 2. ``a`` must have at least ``m * (count + 1)`` entries along ``axis``.
    The gradient (:func:`_untile`) is written out rather than left to autodiff.
    """
    if a.shape[axis] < m * (count + 1):
        raise ValueError(f"_tiles: axis {axis} has {a.shape[axis]} entries, need {m * (count + 1)}")
    return list(_tiles_vjp(a, axis, m, count, a.shape[axis]))


def _tiles_fwd_only(a, axis, m, count):
    def split(z):
        return z.reshape(z.shape[:axis] + (count, m) + z.shape[axis + 1:])
    head = split(lax.slice_in_dim(a, 0, m * count, axis=axis))
    tail = split(lax.slice_in_dim(a, m, m * count + m, axis=axis))
    pick = lambda z, i: lax.index_in_dim(z, i, axis + 1, keepdims=False)
    return tuple([pick(head, u) for u in range(m)] + [pick(tail, u) for u in range(2)])


def _untile(gs, axis: int, m: int, count: int, length: int) -> jax.Array:
    """Transpose of :func:`_tiles`: overlap-add the per-tile rows ``gs[u][t]`` back to row ``m t + u``.

    Tile t's two overlap rows (u = m, m + 1) land on rows 0 and 1 of tile t + 1, so each of the first two
    row slots is one shifted add and the rest are copies; stacking the ``m`` slots and one reshape lays
    them out. Autodiff's transpose (a zero-padded copy of the input per tile row, all summed) computed
    the same values, but the input gradient of F(4x4) convs alone took 1.2-2x as long in most runs
    (docs/performance.md, "The tile extraction's transpose").
    """
    nd = gs[0].ndim

    def pad(z, lo, hi):
        cfg = [(0, 0, 0)] * nd
        cfg[axis] = (lo, hi, 0)
        return lax.pad(z, jnp.zeros((), z.dtype), cfg)

    slots = [pad(gs[u], 0, 1) + pad(gs[m + u], 1, 0) if u < 2 else pad(gs[u], 0, 1) for u in range(m)]
    z = jnp.stack(slots, axis=axis + 1)  # [..., count + 1, m, ...]: row m t + u
    z = z.reshape(z.shape[:axis] + ((count + 1) * m,) + z.shape[axis + 2:])
    return pad(z, 0, length - (count + 1) * m)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _tiles_vjp(a, axis, m, count, length):
    return _tiles_fwd_only(a, axis, m, count)


def _tiles_vjp_fwd(a, axis, m, count, length):
    return _tiles_fwd_only(a, axis, m, count), None


def _tiles_vjp_bwd(axis, m, count, length, _, gs):
    return (_untile(gs, axis, m, count, length),)


_tiles_vjp.defvjp(_tiles_vjp_fwd, _tiles_vjp_bwd)


def _winograd(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]], m: int) -> jax.Array:
    b_t, g, a_t = _MATRICES[m]
    alpha = m + 2
    n, h, wd, cin = x.shape
    cout = w.shape[-1]
    (top, bottom), (left, right) = padding
    ho, wo = h + top + bottom - 2, wd + left + right - 2
    th, tw = -(-ho // m), -(-wo // m)
    extra = max(m, 2)
    # pad to whole tiles; the rows past the true padding only feed outputs that are cropped away
    xp = jnp.pad(x, ((0, 0), (top, m * th + extra - h - top), (left, m * tw + extra - wd - left), (0, 0)))
    v = []
    for row in _combine(b_t, _tiles(xp, 1, m, th)):        # B^T d over rows, then columns: (m+2)^2 arrays
        v.extend(_combine(b_t, _tiles(row, 2, m, tw)))  # each [n, th, tw, cin]
    gf = g.astype(np.float32)
    u = jnp.einsum("ai,ijcd,bj->abcd", gf, w, gf).reshape(alpha * alpha, cin, cout)
    tiles = n * th * tw
    prod = [(v[k].reshape(tiles, cin) @ u[k]).reshape(n, th, tw, cout) for k in range(alpha * alpha)]
    cols = [_combine(a_t, [prod[p * alpha + q] for p in range(alpha)]) for q in range(alpha)]  # A^T over rows
    out = [_combine(a_t, [cols[q][i] for q in range(alpha)]) for i in range(m)]              # then columns
    y = jnp.stack([jnp.stack(out[i], axis=3) for i in range(m)], axis=2)  # [n, th, m, tw, m, cout]
    return y.reshape(n, m * th, m * tw, cout)[:, :ho, :wo]


def winograd_conv2d(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]],
                    m: int) -> jax.Array:
    """3x3, stride-1 NHWC x HWIO correlation through F(m x m, 3 x 3), ``m`` in {2, 4}.

    ``padding`` is explicit ``((top, bottom), (left, right))``, each in 0..2. Same result as
    ``lax.conv_general_dilated`` within the float32 tolerance in the module docstring.
    """
    if m not in _MATRICES:
        raise ValueError(f"Winograd tile m={m} is not supported: use 2 or 4")
    return _winograd(x, w, padding, m)


_DIMS = ("NHWC", "HWIO", "NHWC")


def _direct(x, w, padding):
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def winograd_kernel_grad_conv2d(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]],
                                m: int) -> jax.Array:
    """3x3, stride-1 NHWC x HWIO correlation whose *kernel gradient* goes through F(m x m, 3 x 3).

    The forward pass and the input gradient are XLA's own convolutions (fast on CPU when channels
    are few: a direct conv reads each activation once, where the Winograd transforms of
    :func:`winograd_conv2d` cost more memory traffic than their thin matmuls save). The kernel
    gradient, XLA:CPU's slow case, is the transpose of :func:`winograd_conv2d` in ``w`` only:
    ``dU_k = V_k^T dM_k`` over the ``(m + 2)^2`` tile positions, then ``G^T dU G``.
    Same values and gradients as ``lax.conv_general_dilated`` within the tolerances above.
    """
    if m not in _MATRICES:
        raise ValueError(f"Winograd tile m={m} is not supported: use 2 or 4")
    return _direct(x, w, padding)


def _kg_fwd(x, w, padding, m):
    return winograd_kernel_grad_conv2d(x, w, padding, m), (x, w)


def _kg_bwd(padding, m, residuals, dy):
    x, w = residuals
    (dx,) = jax.vjp(lambda x_: _direct(x_, w, padding), x)[1](dy)
    (dw,) = jax.vjp(lambda w_: _winograd(x, w_, padding, m), w)[1](dy)
    return dx, dw


winograd_kernel_grad_conv2d.defvjp(_kg_fwd, _kg_bwd)


def supports(kernel_hw, strides, dilation, groups, padding) -> bool:
    """Whether a conv has the shape :func:`winograd_conv2d` computes (3x3, stride 1, no dilation or groups)."""
    return (tuple(kernel_hw) == (3, 3) and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
            and all(0 <= p <= 2 for pair in padding for p in pair))
