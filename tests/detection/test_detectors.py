"""Every detector: losses on hand-built targets, one jit-compiled training step, inference shapes,
and the experiment / CLI entry points on tiny inputs."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data.shapes import make_shapes
from jaxdl.detection.detectors import available_detectors, create_detector
from jaxdl.detection.experiment import _smoke_model, recipe
from jaxdl.detection.sampling import assign, sample_balanced
from jaxdl.detection.ssd import ssd_match
from jaxdl.detection.proposals import proposal_recall, proposals_for, selective_search
from jaxdl.detection.train import detection_train_step, predict, shapes_batch
from jaxdl.detection.yolo import yolo_targets
from jaxdl.errors import ConfigError
from jaxdl.optim import optimizer
from jaxdl.train.state import create_train_state


def test_yolo_targets_assign_each_object_to_its_centre_cell():
    boxes = jnp.array([[0., 0, 10, 10], [40, 8, 60, 30], [2, 2, 14, 14], [0, 0, 0, 0]])
    classes = jnp.array([0, 2, 1, -1])
    t = yolo_targets(boxes, classes, grid=4, image_size=64)      # cells of 16 px
    obj = np.asarray(t["obj"])
    assert obj.sum() == 2 and obj[0, 0] and obj[1, 3]
    # boxes 0 and 2 share cell (0, 0): the larger (class 1) wins
    assert int(t["cls"][0, 0]) == 1 and int(t["cls"][1, 3]) == 2
    np.testing.assert_allclose(t["box"][1, 3], [40, 8, 60, 30])


def test_yolo_loss_is_zero_for_a_perfect_prediction_and_weights_match_the_paper():
    m = create_detector("yolo_v1", num_classes=2, image_size=32, **{**_smoke_model("yolo_v1"), "grid": 2})
    assert (m.lambda_coord, m.lambda_noobj) == (5.0, 0.5)
    # one object centred in cell (0, 1): box (20, 4, 28, 12) -> x = y = 0.5, sqrt(w/32) = 0.5
    boxes, classes = jnp.array([[[20., 4, 28, 12]]]), jnp.array([[1]])
    raw = np.zeros((1, 2, 2, 12), np.float32)
    raw[0, 0, 1, :5] = [0.5, 0.5, 0.5, 0.5, 1.0]       # box 0 exact, confidence = IoU = 1
    raw[0, 0, 1, 5:10] = [0.5, 0.5, 0.1, 0.1, 0.0]     # box 1 poor, confidence 0
    raw[..., 10] = 0.5
    raw[..., 11] = 0.5
    raw[0, 0, 1, 10:] = [0.0, 1.0]
    # the loss of given outputs needs no parameters
    loss_of = jax.jit(lambda r: m.apply({}, r, {"boxes": boxes, "classes": classes}, method="loss_from_raw"))
    loss, parts = loss_of(jnp.asarray(raw))
    np.testing.assert_allclose(float(loss), 0.0, atol=1e-6)
    raw[0, 0, 1, 0] = 0.7                                # x off by 0.2: lambda_coord * 0.04 = 0.2
    raw[0, 1, 1, 4] = 0.4                                # a no-object box with confidence 0.4: 0.5 * 0.16
    loss, parts = loss_of(jnp.asarray(raw))
    np.testing.assert_allclose(float(parts["xy"]), 5 * 0.04, rtol=1e-5)
    np.testing.assert_allclose(float(parts["noobj"]), 0.5 * 0.16, rtol=1e-5)


def test_ssd_matching_and_hard_negative_ratio():
    defaults = jnp.array([[0., 0, 10, 10], [0, 0, 12, 12], [30, 30, 40, 40], [50, 50, 60, 60], [20, 0, 30, 5]])
    boxes = jnp.array([[0., 0, 11, 11], [51, 51, 64, 64], [0, 0, 0, 0]])
    labels, matched = ssd_match(defaults, boxes, jnp.array([2, 0, -1]))
    # IoU > 0.5 -> defaults 0 and 1 take object 0 (class 2 -> label 3); default 3 is object 1's best (forced)
    np.testing.assert_array_equal(labels, [3, 3, 0, 1, 0])
    np.testing.assert_allclose(matched[3], [51, 51, 64, 64])


def test_assign_and_sample_balanced():
    cands = jnp.array([[0., 0, 10, 10], [0, 0, 10, 9], [0, 0, 5, 5], [40, 40, 50, 50], [20, 20, 30, 30]])
    label, matched, iou = assign(cands, jnp.ones(5, bool), jnp.array([[0., 0, 10, 10], [21, 21, 31, 31]]),
                                 jnp.array([0, 1]), 0.7, 0.3, allow_low_quality=True)
    # 0.9 -> pos, 0.25 -> neg, 0 -> neg, 0.68 with gt 1 -> pos only as its best anchor
    np.testing.assert_array_equal(label, [1, 1, 0, 0, 1])
    lab = jnp.array([1] * 10 + [0] * 100 + [-1] * 20)
    idx, kind = sample_balanced(jax.random.PRNGKey(0), lab, 32, 0.25)
    idx, kind = np.asarray(idx), np.asarray(kind)
    assert (kind == 1).sum() == 8 and (kind == 0).sum() == 24
    assert np.all(np.asarray(lab)[idx[kind == 1]] == 1) and np.all(np.asarray(lab)[idx[kind == 0]] == 0)
    assert len(set(idx.tolist())) == 32
    idx, kind = sample_balanced(jax.random.PRNGKey(0), jnp.array([1, 0, -1, 0]), 8, 0.5)
    assert list(np.asarray(kind)) == [1, 0, 0, -1, -1, -1, -1, -1]


@pytest.fixture(scope="module")
def tiny_data():
    return make_shapes(4, image_size=32, seed=0, max_objects=3)


STEP_MODELS = ["yolo_v1", "ssd", "faster_rcnn", "mask_rcnn", "fast_rcnn", "faster_rcnn_fpn"]


def test_every_registered_detector_is_stepped():
    assert sorted(STEP_MODELS) == available_detectors()


@pytest.mark.parametrize("name", STEP_MODELS)
def test_training_step_reduces_nothing_to_nan_and_inference_is_static(name, tiny_data):
    model = create_detector(name, num_classes=3, image_size=32, **_smoke_model(name))
    with_masks = name == "mask_rcnn"
    state = create_train_state(model, optimizer("adam", 1e-3), input_shape=(32, 32, 3), seed=0)
    given = name == "fast_rcnn"
    proposals = proposals_for(tiny_data.images, 16) if given else None
    batch = shapes_batch(tiny_data, np.arange(4), with_masks, proposals)
    step = jax.jit(detection_train_step, donate_argnums=0)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
    changed = jax.tree_util.tree_map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.params, before)
    assert max(jax.tree_util.tree_leaves(changed)) > 0
    out = predict(state, tiny_data.images[:2], None if proposals is None else proposals[:2])
    d = out["boxes"].shape[1]
    assert out["boxes"].shape == (2, d, 4) and out["scores"].shape == (2, d) and out["classes"].dtype == jnp.int32
    if with_masks:
        assert out["masks"].shape == (2, d, 32, 32)
        assert set(metrics) >= {"mask", "rpn_cls", "roi_cls"}


def test_selective_search_proposals_cover_the_shapes():
    data = make_shapes(20, image_size=64, seed=5)
    props = proposals_for(data.images, 64)
    assert props.shape == (20, 64, 4)
    assert proposal_recall(props, data.boxes, data.classes, 0.5) >= 0.85
    one = selective_search(data.images[0])
    assert one.ndim == 2 and len(one) > data.num_objects[0]
    assert np.all(one[:, 2] > one[:, 0]) and np.all(one[:, :2] >= 0) and np.all(one[:, 2:] <= 64)
    with pytest.raises(ConfigError, match="needs proposals"):
        m = create_detector("fast_rcnn", num_classes=3, image_size=32, **_smoke_model("fast_rcnn"))
        v = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
        m.apply(v, jnp.zeros((1, 32, 32, 3)))


def test_unknown_detector_and_bad_options():
    with pytest.raises(ConfigError, match="did you mean 'ssd'"):
        create_detector("sdd")
    with pytest.raises(ConfigError, match="bad option"):
        create_detector("ssd", no_such_field=1)


RECIPE_MODELS = ("yolo_v1", "ssd", "faster_rcnn", "mask_rcnn", "fast_rcnn", "faster_rcnn_fpn")
SHAPES_SCRIPTS = [Path(__file__).resolve().parents[2] / "experiments" / f"{m}_shapes.py" for m in RECIPE_MODELS]


def _load(path):
    spec = importlib.util.spec_from_file_location(f"experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_detection_script_documents_its_command_and_uses_its_recipe():
    assert all(p.is_file() for p in SHAPES_SCRIPTS)
    for path in SHAPES_SCRIPTS:
        module = _load(path)
        assert "Command" in module.__doc__ and f"--model {path.stem[:-7]}" in module.__doc__
        assert module.get_config() == recipe(path.stem[:-7])


def test_ssd_script_smoke_run_writes_summary_and_example(tmp_path):
    module = _load(next(p for p in SHAPES_SCRIPTS if p.stem == "ssd_shapes"))
    summary = module.main(["--smoke", "--out", str(tmp_path), "--no-progress"])
    assert 0.0 <= summary["map50"] <= 1.0 and summary["steps"] == 2
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["model"] == "ssd" and "device" in saved
    assert (tmp_path / "examples.png").stat().st_size > 1000


def test_cli_detect_train_bad_model_is_one_line_exit_2():
    r = subprocess.run([sys.executable, "-m", "jaxdl.cli", "detect-train", "--model", "yolo", "--smoke"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown detector 'yolo'" in r.stderr and "Traceback" not in r.stderr


def test_rcnn_script_smoke_run(tmp_path):
    module = _load(Path(__file__).resolve().parents[2] / "experiments" / "rcnn_shapes.py")
    assert "Command" in module.__doc__
    summary = module.main(["--smoke", "--out", str(tmp_path)])
    assert 0.0 <= summary["map50"] <= 1.0 and (tmp_path / "summary.json").is_file()


def test_detect_train_model_options_override_the_recipe():
    import argparse

    from jaxdl.detection.experiment import _apply_args, add_detect_train_arguments
    p = argparse.ArgumentParser()
    add_detect_train_arguments(p)
    config = _apply_args(recipe("yolo_v1"), p.parse_args(["--model-options", "head=fc,hidden=64,dropout_rate=0.25"]))
    assert config.model_options == {"head": "fc", "hidden": 64, "dropout_rate": 0.25}
    config = _apply_args(recipe("yolo_v1"), p.parse_args(["--model", "ssd", "--model-options", "extra_width=8"]))
    assert config.model == "ssd" and config.model_options == {"extra_width": 8}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _apply_args(recipe("yolo_v1"), p.parse_args(["--model-options", "head"]))
    r = subprocess.run([sys.executable, "-m", "jaxdl.cli", "detect-train", "--model-options", "no_such=1", "--smoke"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no_such" in r.stderr and "Traceback" not in r.stderr
