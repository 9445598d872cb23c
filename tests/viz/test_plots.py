"""Plots are valid PNGs written atomically; the confusion matrix counts correctly."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from jaxdl.viz import confusion_matrix, plot_confusion, plot_curves, plot_filters


def _png(path):
    assert os.path.getsize(path) > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()  # decodes the whole file: fails on a truncated PNG
        assert img.size[0] > 0 and img.size[1] > 0
        return img.size


def _no_leftovers(folder, expected):
    assert sorted(os.listdir(folder)) == sorted(expected)  # no temporary files left behind


def test_confusion_matrix_by_hand():
    labels = [0, 0, 1, 2, 2, 2, 1]
    preds = [0, 1, 1, 2, 0, 2, 1]
    expected = np.array([[1, 1, 0],
                         [0, 2, 0],
                         [1, 0, 2]])
    got = confusion_matrix(labels, preds, 3)
    np.testing.assert_array_equal(got, expected)
    assert np.issubdtype(got.dtype, np.integer)
    np.testing.assert_array_equal(confusion_matrix([], [], 2), np.zeros((2, 2)))
    np.testing.assert_array_equal(confusion_matrix(np.array([[3]]), np.array([[0]]), 4)[3], [1, 0, 0, 0])


@pytest.mark.parametrize("labels, preds, match", [
    ([0, 1], [0], "same length"),
    ([0, 3], [0, 1], r"\[0, 3\)"),
    ([0, 1], [0, -1], "prediction"),
    ([0.5, 1], [0, 1], "integer"),
])
def test_confusion_matrix_rejects_bad_input(labels, preds, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(labels, preds, 3)


def test_plot_curves(tmp_path):
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.5 + 0.1 * e, "learning_rate": 0.1 / e,
                **({"test_loss": 2.2 / e, "test_accuracy": 0.4 + 0.1 * e} if e % 2 else {})}
               for e in range(1, 6)]
    three = plot_curves(history, tmp_path / "curves.png")
    w3, h3 = _png(three)
    w1, _ = _png(plot_curves([{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": float("nan")}],
                             tmp_path / "sub" / "loss_only.png"))
    assert w3 > 2 * w1  # one panel per present group: loss, accuracy, learning rate
    _no_leftovers(tmp_path, ["curves.png", "sub"])
    with pytest.raises(ValueError, match="empty"):
        plot_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_curves([{"epoch": 1, "step": 3}], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_confusion(tmp_path):
    matrix = confusion_matrix([0, 1, 2, 2, 1], [0, 2, 2, 1, 1], 4)  # class 3 never occurs
    _png(plot_confusion(matrix, ["a", "b", "c", "d"], tmp_path / "cm.png"))
    _png(plot_confusion(matrix, None, tmp_path / "cm_counts.png", normalize=False))
    _no_leftovers(tmp_path, ["cm.png", "cm_counts.png"])
    with pytest.raises(ValueError, match="3 class names"):
        plot_confusion(matrix, ["a", "b", "c"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="square"):
        plot_confusion(np.zeros((2, 3)), None, tmp_path / "bad.png")


@pytest.mark.parametrize("cin", [1, 3, 4])
def test_plot_filters(tmp_path, cin):
    kernel = np.random.default_rng(0).normal(size=(5, 5, cin, 6))
    kernel[..., 0] = 1.0  # a constant filter must not divide by zero
    _png(plot_filters(kernel, tmp_path / "filters.png"))
    _no_leftovers(tmp_path, ["filters.png"])
    with pytest.raises(ValueError, match="kh, kw, cin, cout"):
        plot_filters(kernel[..., 0], tmp_path / "bad.png")


def test_overwrites_and_leaves_no_pyplot_state(tmp_path):
    from matplotlib import pyplot as plt

    open_before = plt.get_fignums()
    path = tmp_path / "cm.png"
    path.write_bytes(b"old, not a png")
    plot_confusion(np.eye(2, dtype=int), None, path)
    plot_curves([{"train_loss": 1.0}], tmp_path / "c.png")
    _png(path)
    assert plt.get_fignums() == open_before  # no figure left open in pyplot's registry
    _no_leftovers(tmp_path, ["cm.png", "c.png"])
