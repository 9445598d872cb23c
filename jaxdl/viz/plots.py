"""Training plots: learning curves, confusion matrices, first-layer filters.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, never
through ``pyplot``, so nothing global (current figure, backend, rcParams) is touched and no
figure outlives its function. Files are written atomically: rendered to a temporary file in
the target folder, then moved over ``path`` with ``os.replace``, so a reader never sees a
half-written PNG.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_curves", "confusion_matrix", "plot_confusion", "plot_filters"]


def _save(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a plot is meant to be read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(history):
        value = row.get(key)
        if value is None:
            continue
        value = float(value)
        if math.isfinite(value):
            xs.append(float(row.get("epoch", i + 1)))
            ys.append(value)
    return xs, ys


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Learning curves from per-epoch records (e.g. the rows of ``metrics.jsonl``).

    ``history`` is a list of dicts with keys like ``epoch, train_loss, train_accuracy, test_loss,
    test_accuracy, learning_rate``; any key ending in ``_loss`` goes to the loss panel, in
    ``_accuracy`` to the accuracy panel, ``learning_rate`` to its own (log-scale) panel. Panels
    with no data are left out; missing or non-finite values are skipped (e.g. a test set
    evaluated every other epoch). The x axis is ``epoch`` (or the row number from 1).

    Raises:
      ValueError: ``history`` is empty or has none of these keys.
    """
    if not history:
        raise ValueError("plot_curves needs at least one epoch record; history is empty")
    keys = sorted({k for row in history for k in row})
    panels = [
        ("loss", [k for k in keys if k.endswith("_loss") or k == "loss"]),
        ("accuracy", [k for k in keys if k.endswith("_accuracy") or k == "accuracy"]),
        ("learning rate", [k for k in keys if k == "learning_rate"]),
    ]
    panels = [(title, [k for k in ks if _series(history, k)[0]]) for title, ks in panels]
    panels = [(title, ks) for title, ks in panels if ks]
    if not panels:
        raise ValueError(f"nothing to plot: history has keys {keys}, expected some of train_loss, test_loss, "
                         f"train_accuracy, test_accuracy, learning_rate (any '*_loss' or '*_accuracy')")
    fig = Figure(figsize=(5 * len(panels), 4), layout="constrained")
    for ax, (title, ks) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for k in ks:
            xs, ys = _series(history, k)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=k)
        if title == "learning rate" and all(y > 0 for k in ks for y in _series(history, k)[1]):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    return _save(fig, path)


def confusion_matrix(labels: Any, predictions: Any, num_classes: int) -> np.ndarray:
    """``int64[num_classes, num_classes]``: entry ``[t, p]`` counts examples of true class ``t``
    predicted as ``p`` (rows: truth, columns: prediction).

    Raises:
      ValueError: shapes differ, or a label/prediction is outside ``[0, num_classes)``.
    """
    labels = np.asarray(labels).reshape(-1)
    predictions = np.asarray(predictions).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels and predictions must have the same length, got {labels.size} and "
                         f"{predictions.size}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for what, values in (("label", labels), ("prediction", predictions)):
        if values.size and (not np.issubdtype(values.dtype, np.integer) or values.min() < 0
                            or values.max() >= num_classes):
            raise ValueError(f"every {what} must be an integer class index in [0, {num_classes}); got values "
                             f"from {values.min()} to {values.max()} ({values.dtype})")
    flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def plot_confusion(matrix: Any, class_names: Sequence[str] | None, path: str | os.PathLike,
                   normalize: bool = True) -> Path:
    """Heat map of a confusion matrix (rows: true class, columns: predicted class).

    ``normalize=True`` shows each row as fractions of that class's examples (rows with no
    examples stay 0). Cell values are written in when there are at most 20 classes.
    ``class_names=None`` labels classes by index.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a confusion matrix is square [num_classes, num_classes], got shape {matrix.shape}")
    k = matrix.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"got {len(names)} class names for a {k}x{k} confusion matrix")
    shown = matrix.astype(np.float64)
    if normalize:
        totals = shown.sum(1, keepdims=True)
        shown = np.divide(shown, totals, out=np.zeros_like(shown), where=totals > 0)
    side = min(4 + 0.4 * k, 20)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(shown.max(), 1))
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(k), names, rotation=90 if k > 10 else 45, ha="right" if k <= 10 else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if k <= 20:
        threshold = 0.5 * (shown.max() if shown.size else 0)
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > threshold else "black")
    return _save(fig, path)


def plot_filters(kernel: Any, path: str | os.PathLike) -> Path:
    """First-layer convolution kernels ``[kh, kw, cin, cout]`` as a grid of ``cout`` images.

    Each filter is min-max normalised on its own (a constant filter is drawn black). With
    ``cin == 3`` filters are drawn in colour, with ``cin == 1`` in grey; other ``cin`` are
    averaged over the input channels and drawn in grey.
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 4:
        raise ValueError(f"plot_filters expects a conv kernel [kh, kw, cin, cout], got shape {kernel.shape}")
    kh, kw, cin, cout = kernel.shape
    filters = np.moveaxis(kernel, -1, 0)  # [cout, kh, kw, cin]
    if cin != 3:
        filters = filters.mean(-1, keepdims=True)
    low = filters.min((1, 2, 3), keepdims=True)
    span = filters.max((1, 2, 3), keepdims=True) - low
    filters = np.divide(filters - low, span, out=np.zeros_like(filters), where=span > 0)
    cols = math.ceil(math.sqrt(cout))
    rows = math.ceil(cout / cols)
    fig = Figure(figsize=(max(2.0, 0.8 * cols), max(2.0, 0.8 * rows)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for idx, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if idx < cout:
            f = filters[idx]
            ax.imshow(f if cin == 3 else f[..., 0], cmap=None if cin == 3 else "gray", vmin=0, vmax=1,
                      interpolation="nearest")
    fig.suptitle(f"{cout} filters {kh}x{kw}x{cin}")
    return _save(fig, path)
