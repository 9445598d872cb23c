"""Images with drawn detections (boxes, class names, scores, optional instance masks)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from jaxdl.viz.plots import _save

__all__ = ["plot_detections"]

_COLOURS = ("#ff595e", "#ffca3a", "#8ac926", "#1982c4", "#6a4c93", "#ff924c", "#52a675", "#c5ca30")


def plot_detections(images: np.ndarray, detections: Mapping[str, np.ndarray], class_names: Sequence[str],
                    path: str | os.PathLike, *, ground_truth: Mapping[str, np.ndarray] | None = None,
                    masks: bool = False, score_threshold: float = 0.5, columns: int = 3) -> Path:
    """Save a grid of ``images <u8>[N, H, W, 3]`` with their detections drawn.

    ``detections``: ``{"boxes": [N, D, 4], "scores": [N, D], "classes": [N, D]}`` (+ ``"masks":
    [N, D, H, W]`` probabilities, overlaid when ``masks``); rows with class < 0 or a score below
    ``score_threshold`` are skipped. ``ground_truth`` boxes, if given, are drawn dashed in white.
    """
    images = np.asarray(images)
    n = images.shape[0]
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.6 * cols, 2.6 * rows), layout="constrained")
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        img = images[i].astype(np.float32) / 255.0
        keep = (np.asarray(detections["classes"][i]) >= 0) & (np.asarray(detections["scores"][i]) >= score_threshold)
        if masks and "masks" in detections:
            for j in np.flatnonzero(keep):
                c = int(detections["classes"][i][j])
                colour = np.array([int(_COLOURS[c % len(_COLOURS)][k:k + 2], 16) for k in (1, 3, 5)]) / 255.0
                m = np.asarray(detections["masks"][i][j]) > 0.5
                img[m] = 0.45 * img[m] + 0.55 * colour
        ax.imshow(img, interpolation="nearest")
        if ground_truth is not None:
            for box, c in zip(ground_truth["boxes"][i], ground_truth["classes"][i]):
                if c >= 0:
                    ax.add_patch(Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0], box[3] - box[1], fill=False,
                                           edgecolor="white", linestyle="--", linewidth=0.8))
        for j in np.flatnonzero(keep):
            box = detections["boxes"][i][j]
            c = int(detections["classes"][i][j])
            colour = _COLOURS[c % len(_COLOURS)]
            ax.add_patch(Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0], box[3] - box[1], fill=False,
                                   edgecolor=colour, linewidth=1.5))
            ax.text(box[0], box[1] - 1, f"{class_names[c]} {float(detections['scores'][i][j]):.2f}", color=colour,
                    fontsize=6, va="bottom")
        ax.set_axis_off()
    return _save(fig, path)
