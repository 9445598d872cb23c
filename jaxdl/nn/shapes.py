"""Output-size formulas of convolutions and pooling, as PyTorch defines them.

For one spatial axis of size ``W``, a window of size ``F`` (effective size
``F_eff = dilation * (F - 1) + 1``), symmetric padding ``P`` and stride ``S``:

* ``conv_output_size``: ``floor((W + 2P - F_eff) / S) + 1`` (``nn.Conv`` with
  ``padding=((P, P), (P, P))`` and ``nn.max_pool`` with the same padding produce it);
  with ``ceil_mode=True`` the division rounds up, and a last window that would start in
  the right padding is dropped (PyTorch's pooling rule; e.g. AlexNet/GoogLeNet pools).
* ``transposed_conv_output_size``: ``(W - 1) S - 2P + dilation (F - 1) + output_padding + 1``
  (PyTorch ``ConvTranspose2d``; in flax, ``nn.ConvTranspose`` with padding
  ``(F_eff - 1 - P, F_eff - 1 - P + output_padding)`` per axis gives it).

    >>> conv_output_size(32, 5, 0, 1)      # LeNet-5 C1: 32 -> 28
    28
    >>> conv_output_size(55, 3, 0, 2, ceil_mode=True)  # AlexNet pool1 (torchvision: floor = 27 too)
    27
    >>> conv_output_size(112, 3, 0, 2, ceil_mode=True)  # GoogLeNet maxpool1: 56 (floor would be 55)
    56
"""

from __future__ import annotations

import operator

__all__ = ["conv_output_size", "transposed_conv_output_size"]


def _check_int(name: str, value: int, minimum: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def conv_output_size(w: int, f: int, p: int, s: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    """Size of one spatial axis after a convolution or pooling window.

    Args:
      w: input size ``W`` (>= 1).
      f: window (kernel) size ``F`` (>= 1).
      p: padding ``P`` on each side (>= 0).
      s: stride ``S`` (>= 1).
      dilation: spacing of the window's taps; the window covers ``dilation * (F - 1) + 1``.
      ceil_mode: round the division up, as PyTorch's pooling with ``ceil_mode=True``; the
        last window must still start inside the input or the left padding (PyTorch drops it
        otherwise), so e.g. ``W=5, F=2, P=1, S=2`` gives 3, not 4. As in PyTorch's pooling,
        ``P`` may then be at most ``F_eff // 2``.

    Returns:
      ``floor((W + 2P - F_eff) / S) + 1`` (or the ceil variant).

    Raises:
      ValueError: a negative or zero size, a window larger than the padded input, or (with
        ``ceil_mode``) padding larger than half the window.
    """
    w = _check_int("input size w", w, 1)
    f = _check_int("kernel size f", f, 1)
    p = _check_int("padding p", p, 0)
    s = _check_int("stride s", s, 1)
    dilation = _check_int("dilation", dilation, 1)
    f_eff = dilation * (f - 1) + 1
    span = w + 2 * p - f_eff
    if span < 0:
        raise ValueError(
            f"a window of effective size {f_eff} (kernel {f}, dilation {dilation}) does not fit in an input "
            f"of size {w} padded by {p} on each side ({w + 2 * p} in all); use a larger input, more padding "
            f"or a smaller kernel")
    if not ceil_mode:
        return span // s + 1
    if p > f_eff // 2:
        # PyTorch's pooling refuses this too ("pad should be at most half of effective kernel size").
        raise ValueError(f"ceil_mode (pooling) needs padding at most half the window ({f_eff} // 2 = "
                         f"{f_eff // 2}), got {p}; reduce the padding")
    out = -(-span // s) + 1
    # PyTorch (pooling_output_shape): the last window must start inside the input or the
    # left padding, never wholly in the right padding.
    if (out - 1) * s >= w + p:
        out -= 1
    return out


def transposed_conv_output_size(w: int, f: int, p: int, s: int, output_padding: int = 0,
                                dilation: int = 1) -> int:
    """Size of one spatial axis after a transposed convolution (PyTorch ``ConvTranspose2d``).

    ``(W - 1) * S - 2P + dilation * (F - 1) + output_padding + 1``; ``output_padding`` picks
    one of the ``S`` input sizes that a stride-``S`` convolution maps to ``W`` and must be
    smaller than ``S`` or ``dilation`` (PyTorch's rule).

    Raises:
      ValueError: bad arguments, or padding so large that nothing is left.
    """
    w = _check_int("input size w", w, 1)
    f = _check_int("kernel size f", f, 1)
    p = _check_int("padding p", p, 0)
    s = _check_int("stride s", s, 1)
    dilation = _check_int("dilation", dilation, 1)
    output_padding = _check_int("output_padding", output_padding, 0)
    if output_padding >= max(s, dilation):
        raise ValueError(
            f"output_padding must be smaller than the stride ({s}) or the dilation ({dilation}), got "
            f"{output_padding}; it only chooses among the {s} sizes a stride-{s} convolution maps to {w}")
    out = (w - 1) * s - 2 * p + dilation * (f - 1) + output_padding + 1
    if out < 1:
        raise ValueError(
            f"a transposed convolution of input {w}, kernel {f}, stride {s}, dilation {dilation} and padding {p} "
            f"would have output size {out}; reduce the padding to at most {(out - 1 + 2 * p) // 2}")
    return out
