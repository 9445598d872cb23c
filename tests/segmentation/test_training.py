"""Segmentation training: the CLI entry runs a smoke fit and writes its run folder; bad input exits 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxdl.cli import main
from jaxdl.data.shapes import make_shapes
from jaxdl.segmentation import training
from jaxdl.segmentation.training import SegmentationConfig, fit_segmentation, segmentation_batches, smoke_config
from jaxdl.errors import ConfigError


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_smoke_fit_writes_the_run(tmp_path):
    summary = fit_segmentation(smoke_config(SegmentationConfig(model="fcn8s")), tmp_path / "run", log=None)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert summary["model"] == "fcn8s" and summary["epochs"] == 1 and summary["steps"] == 3
    assert 0.0 <= summary["test_mean_iou"] <= 1.0 and 0.0 <= summary["test_pixel_accuracy"] <= 1.0
    assert summary["class_names"] == ["background", "circle", "square", "triangle"]
    assert len(summary["test_iou_per_class"]) == 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 3
    assert (tmp_path / "run" / "predictions.png").stat().st_size > 1000
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"] == "fcn8s"


def test_segment_train_builds_the_config(capsys, tmp_path, monkeypatch):
    """The CLI maps its flags onto SegmentationConfig (the fit itself is tested above)."""
    seen = {}

    def fake_fit(config, out, log=print):
        seen["config"], seen["out"] = config, out
        return {"model": config.model, "test_mean_iou": 0.5, "test_pixel_accuracy": 0.9, "train_seconds": 1.0}

    monkeypatch.setattr(training, "fit_segmentation", fake_fit)
    code, out, _ = run(capsys, "segment-train", "--model", "segnet", "--model-option", "width=0.125",
                       "--epochs", "3", "--learning-rate", "0.01", "--out", str(tmp_path / "r"))
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["test_mean_iou"] == 0.5
    config = seen["config"]
    assert (config.model, config.model_options, config.epochs, config.learning_rate) == ("segnet", {"width": 0.125},
                                                                                          3, 0.01)
    code, _, _ = run(capsys, "segment-train", "--model", "fcn8s", "--model-options", "width=0.25,fc_width=64",
                     "--out", str(tmp_path / "r2"))
    assert code == 0 and seen["config"].model_options == {"width": 0.25, "fc_width": 64}


@pytest.mark.parametrize("argv, expected", [
    (["--model", "fcn4s"], "fcn8s"),
    (["--model", "segnet", "--model-option", "fc_width=3"], "fc_width"),
    (["--model-option", "width"], "KEY=VALUE"),
    (["--epochs", "0"], "epochs"),
])
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, expected):
    code, _, err = run(capsys, "segment-train", "--out", str(tmp_path / "bad"), *argv)
    assert code == 2
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_batches_pad_the_last_eval_batch_with_ignored_labels():
    shapes = make_shapes(10, image_size=32, seed=0)
    train = list(segmentation_batches(shapes, 4, seed=0, epoch=0))
    assert len(train) == 2 and train[0]["label"].shape == (4, 32, 32)
    again = list(segmentation_batches(shapes, 4, seed=0, epoch=0))
    np.testing.assert_array_equal(train[1]["image"], again[1]["image"])   # order = f(seed, epoch)
    evals = list(segmentation_batches(shapes, 4, shuffle=False, pad_last=True))
    assert len(evals) == 3 and np.all(evals[-1]["label"][2:] == 255)
    np.testing.assert_array_equal(evals[0]["label"], shapes.semantic[:4])


def test_config_checks():
    with pytest.raises(ConfigError, match="batch_size"):
        SegmentationConfig(num_train=8, batch_size=16)
    with pytest.raises(ConfigError, match="schedule"):
        SegmentationConfig(schedule="step")
