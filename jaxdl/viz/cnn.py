"""Seeing what a CNN learned: filters, feature maps, top-activating patches, saliency.

* :func:`first_conv_kernel` + :func:`jaxdl.viz.plot_filters` - the first layer's kernels
  (Krizhevsky et al. 2012, Fig. 3).
* :func:`feature_maps` / :func:`plot_feature_maps` - the channels of any feature tap for one input.
* :func:`top_activating_patches` / :func:`plot_patches` - for one channel of a tap, the dataset
  images where it fires most, cropped to the input region that unit sees (Zeiler & Fergus 2014,
  "Visualizing and understanding convolutional networks", ECCV, Fig. 2 "image patches").
  The crop is the support of the gradient of that unit w.r.t. the input: its receptive field,
  exact for any architecture (padding, pooling) without a formula per layer.
* :func:`saliency_map` / :func:`plot_saliency` - ``max_c |d score_k / d x|`` (Simonyan, Vedaldi &
  Zisserman 2014, "Deep inside convolutional networks", ICLR workshop, sec. 3.1), the gradient
  of the class score w.r.t. the model input (after the run's normalization).
* :func:`visualize_run` - all of these for a trained run folder (``jaxdl visualize RUN_DIR``).

Inputs are NHWC; ``prepare(key, images, train)`` is the run's preprocessing (uint8 -> normalized
float at the model's input size), ``None`` feeds the images as they are.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from jaxdl.viz.plots import _save, plot_filters

__all__ = ["first_conv_kernel", "feature_maps", "plot_feature_maps", "top_activating_patches", "plot_patches",
           "saliency_map", "plot_saliency", "visualize_run"]

Prepare = Callable[[jax.Array, jax.Array, bool], jax.Array]


def _model_input(images: Any, prepare: Prepare | None) -> jax.Array:
    x = jnp.asarray(images)
    return x.astype(jnp.float32) if prepare is None else prepare(jax.random.PRNGKey(0), x, False)


def first_conv_kernel(model: nn.Module, variables: Any, input_shape: Sequence[int]) -> np.ndarray:
    """Kernel ``[kh, kw, cin, cout]`` of the first convolution the model applies (call order, not name order)."""
    x = jnp.zeros((1, *input_shape), jnp.float32)
    order: list[tuple[str, ...]] = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Conv) and context.method_name == "__call__":
            order.append(tuple(context.module.scope.path))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    if not order:
        raise ValueError("the model has no convolution layer")
    params = variables["params"]
    for key in order[0]:
        params = params[key]
    return np.asarray(params["kernel"])


def feature_maps(model: nn.Module, variables: Any, image: Any, tap: str, *, prepare: Prepare | None = None
                 ) -> np.ndarray:
    """``image: [H, W, C]`` -> the tap's activations ``<f32>[h, w, channels]`` (or ``[D]`` for a vector tap)."""
    x = _model_input(np.asarray(image)[None], prepare)
    out = jax.jit(lambda v, x: model.apply(v, x, train=False, features=(tap,))[tap])(variables, x)
    return np.asarray(out[0], np.float32)


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def plot_feature_maps(maps: Any, path: str | os.PathLike, *, max_channels: int = 64, title: str = "",
                      image: Any = None) -> Path:
    """Grid of the channels of ``maps: [h, w, C]`` (each scaled on its own), the input first if given."""
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(f"feature maps must be [h, w, channels], got shape {maps.shape} (a vector tap has no maps)")
    channels = min(maps.shape[-1], max_channels)
    extra = 0 if image is None else 1
    rows, cols = _grid(channels + extra)
    fig = Figure(figsize=(max(3.0, 1.1 * cols), max(3.0, 1.1 * rows)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    if image is not None:
        img = np.asarray(image)
        axes.flat[0].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
        axes.flat[0].set_title("input", fontsize=7)
    for c in range(channels):
        ax = axes.flat[c + extra]
        ax.imshow(maps[..., c], cmap="viridis", interpolation="nearest")
        ax.set_title(str(c), fontsize=6)
    fig.suptitle(title or f"{channels} of {maps.shape[-1]} channels, {maps.shape[0]}x{maps.shape[1]}")
    return _save(fig, path)


def _unit_gradient(model, variables, x, tap, channel, i, j):
    def unit(x):
        return model.apply(variables, x, train=False, features=(tap,))[tap][0, i, j, channel]
    return jax.grad(unit)(x)


def top_activating_patches(model: nn.Module, variables: Any, images: np.ndarray, tap: str, channel: int, *,
                           k: int = 9, prepare: Prepare | None = None, batch_size: int = 256
                           ) -> list[dict[str, Any]]:
    """The ``k`` dataset images where ``channel`` of ``tap`` reaches its largest value, with their patches.

    Returns one dict per image, best first: ``index`` (in ``images``), ``activation``, ``location``
    (``(i, j)`` in the feature map), ``box`` (``(top, left, bottom, right)`` in model-input pixels:
    the receptive field, from the gradient support) and ``patch`` (the model input cropped to it,
    ``[h, w, C]``).
    """
    from jaxdl.transfer.features import extract_features

    maps = extract_features(model, variables, images, taps=(tap,), batch_size=batch_size, prepare=prepare,
                            progress=False)[tap]
    if maps.ndim != 4:
        raise ValueError(f"tap {tap!r} is not a spatial map (shape {maps.shape[1:]}); choose a conv tap")
    if not 0 <= channel < maps.shape[-1]:
        raise ValueError(f"channel {channel} out of range: {tap} has {maps.shape[-1]} channels")
    per_image = maps[..., channel].reshape(len(maps), -1)
    best = np.argsort(-per_image.max(1), kind="stable")[:k]
    grad_fn = jax.jit(lambda x, i, j: _unit_gradient(model, variables, x, tap, channel, i, j))
    out = []
    for index in best:
        flat = int(per_image[index].argmax())
        i, j = divmod(flat, maps.shape[2])
        x = _model_input(np.asarray(images[index])[None], prepare)
        support = np.abs(np.asarray(grad_fn(x, i, j))[0]).sum(-1) > 0
        rows, cols = np.flatnonzero(support.any(1)), np.flatnonzero(support.any(0))
        if rows.size == 0:  # a dead unit (ReLU off at the max): fall back to the whole input
            box = (0, 0, x.shape[1], x.shape[2])
        else:
            box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
        patch = np.asarray(x[0, box[0]:box[2], box[1]:box[3]])
        out.append({"index": int(index), "activation": float(per_image[index, flat]), "location": (i, j),
                    "box": box, "patch": patch})
    return out


def plot_patches(patches: Sequence[dict[str, Any]], path: str | os.PathLike, *, title: str = "") -> Path:
    """Grid of the patches of :func:`top_activating_patches` (each min-max scaled), labelled by activation."""
    if not patches:
        raise ValueError("no patches to plot")
    rows, cols = _grid(len(patches))
    fig = Figure(figsize=(max(3.0, 1.3 * cols), max(3.0, 1.4 * rows)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, item in zip(axes.flat, patches):
        p = np.asarray(item["patch"], np.float32)
        span = p.max() - p.min()
        p = (p - p.min()) / span if span > 0 else np.zeros_like(p)
        ax.imshow(p[..., 0] if p.shape[-1] == 1 else p, cmap="gray", interpolation="nearest")
        ax.set_title(f"#{item['index']} {item['activation']:.2f}", fontsize=6)
    fig.suptitle(title or "top-activating patches")
    return _save(fig, path)


def saliency_map(model: nn.Module, variables: Any, image: Any, label: int | None = None, *,
                 prepare: Prepare | None = None) -> tuple[np.ndarray, int]:
    """``image: [H, W, C]`` -> (``max_c |d logit_label / d x|`` as ``<f32>[H', W']`` at the model input, label).

    ``label=None`` uses the predicted class.
    """
    x = _model_input(np.asarray(image)[None], prepare)

    @jax.jit
    def saliency(variables, x, label):
        logits = model.apply(variables, x, train=False)
        label = jnp.where(label < 0, jnp.argmax(logits[0]), label)
        grad = jax.grad(lambda x: model.apply(variables, x, train=False)[0, label])(x)
        return jnp.abs(grad[0]).max(-1), label

    value, label = saliency(variables, x, jnp.asarray(-1 if label is None else int(label)))
    return np.asarray(value, np.float32), int(label)


def plot_saliency(image: Any, saliency: Any, path: str | os.PathLike, *, title: str = "") -> Path:
    """The input next to its saliency map."""
    image = np.asarray(image)
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    a, b = fig.subplots(1, 2)
    a.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
    a.set_title("input")
    shown = b.imshow(np.asarray(saliency), cmap="hot")
    b.set_title("|d score / d input|")
    fig.colorbar(shown, ax=b, shrink=0.8)
    for ax in (a, b):
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def visualize_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                  taps: Sequence[str] | None = None, channels: Sequence[int] = (0, 1, 2, 3), image_index: int = 0,
                  patch_images: int = 2000, k: int = 9) -> list[Path]:
    """Write the PNGs of a trained run (rebuilt from its config.json and last checkpoint).

    ``filters.png`` (first conv layer), ``feature_maps_<tap>.png`` for the test image
    ``image_index``, ``patches_<tap>_c<ch>.png`` (top ``k`` of the first ``patch_images`` test
    images) and ``saliency.png``. ``taps`` default: the model's first two spatial taps.
    """
    from jaxdl.transfer.features import load_run_model

    exp, variables = load_run_model(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "viz"
    model, prepare = exp.model, exp.prepare
    test = exp.test_set
    image = test.images[image_index]
    written = [plot_filters(first_conv_kernel(model, variables, exp.input_shape), out / "filters.png")]
    if taps is None:
        shapes = jax.eval_shape(lambda v, x: model.apply(v, x, train=False, features="all"), variables,
                                jnp.zeros((1, *exp.input_shape), jnp.float32))
        # The earliest maps first: largest spatial size, then fewest channels.
        spatial = [(t, s.shape) for t, s in shapes.items() if len(s.shape) == 4]
        taps = [t for t, _ in sorted(spatial, key=lambda ts: (-ts[1][1] * ts[1][2], ts[1][3], ts[0]))][:2]
    shown_input = np.asarray(_model_input(image[None], prepare)[0])
    for tap in taps:
        maps = feature_maps(model, variables, image, tap, prepare=prepare)
        written.append(plot_feature_maps(maps, out / f"feature_maps_{tap}.png", image=shown_input,
                                         title=f"{tap} of test image {image_index} ({test.classes[test.labels[image_index]]})"))
        subset = test.images[:patch_images]
        for ch in channels:
            if ch >= maps.shape[-1]:
                continue
            patches = top_activating_patches(model, variables, subset, tap, ch, k=k, prepare=prepare)
            written.append(plot_patches(patches, out / f"patches_{tap}_c{ch}.png",
                                        title=f"{tap} channel {ch}: top {k} of {len(subset)} test images"))
    saliency, label = saliency_map(model, variables, image, prepare=prepare)
    written.append(plot_saliency(shown_input, saliency, out / "saliency.png",
                                 title=f"saliency of class {test.classes[label]} (true: "
                                       f"{test.classes[test.labels[image_index]]})"))
    return written
