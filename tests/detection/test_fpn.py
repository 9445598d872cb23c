"""Feature Pyramid Network (Lin et al. 2017) in Faster / Mask R-CNN: the neck, eq. 1, the
multi-level anchors and RoI pooling, and a compiled training step."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data.shapes import make_shapes
from jaxdl.detection.anchors import anchor_grid
from jaxdl.detection.backbones import SmallBackbone
from jaxdl.detection.detectors import create_detector
from jaxdl.detection.experiment import _smoke_model
from jaxdl.detection.fpn import FPN, fpn_levels, upsample_nearest_to
from jaxdl.detection.train import shapes_batch
from jaxdl.errors import ConfigError
from jaxdl.nn.roi import roi_align


def _tiny(name="faster_rcnn_fpn", **kw):
    return create_detector(name, num_classes=3, image_size=32, **{**_smoke_model("faster_rcnn_fpn"), **kw})


@pytest.mark.parametrize("size, extra", [(64, False), (64, True), (40, True)])
def test_fpn_neck_shapes_and_strides(size, extra):
    x = jnp.zeros((2, size, size, 3))
    bb = SmallBackbone(widths=(8, 8, 16, 16, 24))
    taps = ("s4", "s8", "s16", "s32")
    c = bb.apply(bb.init(jax.random.PRNGKey(0), x), x, features=taps)
    feats = [c[t] for t in taps]
    neck = FPN(width=12, extra_level=extra)
    v = neck.init(jax.random.PRNGKey(1), feats)
    outs = neck.apply(v, feats)
    strides = [4, 8, 16, 32] + ([64] if extra else [])
    assert [o.shape for o in outs] == [(2, -(-size // s), -(-size // s), 12) for s in strides]
    assert sorted(v["params"]) == sorted([f"lateral{i}" for i in range(4)] + [f"output{i}" for i in range(4)])


def test_fpn_top_down_pathway_and_nearest_upsampling():
    x = np.arange(2 * 3 * 3 * 1, dtype=np.float32).reshape(2, 3, 3, 1)
    up = np.asarray(upsample_nearest_to(jnp.asarray(x), (5, 6)))
    np.testing.assert_array_equal(up, x[:, [0, 0, 1, 1, 2]][:, :, [0, 0, 1, 1, 2, 2]])
    # the finest output depends on the coarsest input only through the top-down pathway
    feats = [jnp.zeros((1, 8, 8, 4)), jnp.zeros((1, 4, 4, 4)), jnp.ones((1, 2, 2, 4))]
    neck = FPN(width=6)
    v = neck.init(jax.random.PRNGKey(0), feats)
    g = jax.grad(lambda top: neck.apply(v, [feats[0], feats[1], top])[0].sum())(feats[2])
    assert float(jnp.abs(g).sum()) > 0
    # P_i = output_i(lateral_i(C_i) + up(merged_{i+1})): check the coarsest two levels by hand
    p = v["params"]
    lat = lambda i, f: jnp.einsum("nhwc,cd->nhwd", f, p[f"lateral{i}"]["kernel"][0, 0]) + p[f"lateral{i}"]["bias"]
    m2 = lat(2, feats[2])
    m1 = lat(1, feats[1]) + jnp.repeat(jnp.repeat(m2, 2, 1), 2, 2)
    conv = lambda i, m: jax.lax.conv_general_dilated(m, p[f"output{i}"]["kernel"], (1, 1), "SAME",
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + p[f"output{i}"]["bias"]
    outs = neck.apply(v, feats)
    np.testing.assert_allclose(outs[2], conv(2, m2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[1], conv(1, m1), rtol=1e-5, atol=1e-5)


def test_level_assignment_matches_eq1():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (200, 2))
    wh = np.exp(rng.uniform(np.log(4), np.log(900), (200, 2)))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]).astype(np.float64) * (boxes[:, 3] - boxes[:, 1]))
    raw = 4 + np.log2(side / 224.0)
    expect = np.clip(np.floor(raw), 2, 5)
    got = np.asarray(fpn_levels(jnp.asarray(boxes), 2, 5))
    clear = np.abs(raw - np.round(raw)) > 1e-4          # float32 may round the other way right at a boundary
    assert clear.sum() > 190
    np.testing.assert_array_equal(got[clear], expect[clear])
    assert set(got.tolist()) == {2, 3, 4, 5}
    np.testing.assert_array_equal(fpn_levels(jnp.asarray([[0., 0, 224, 224], [0, 0, 112, 112], [0, 0, 111, 111],
                                                           [0, 0, 448, 448], [0, 0, 5000, 5000], [0, 0, 10, 10]]), 2, 5),
                                  [4, 3, 2, 5, 5, 2])
    # the detector's scaled rule (k0 4, canonical 32) on its levels P2..P5 -> indices 0..3
    m = create_detector("faster_rcnn_fpn")
    sides = np.array([8.0, 15.9, 17.0, 31.0, 33.0, 70.0, 200.0])
    b = np.stack([np.zeros_like(sides), np.zeros_like(sides), sides, sides], 1)
    np.testing.assert_array_equal(m.roi_levels(jnp.asarray(b)), np.clip(np.floor(4 + np.log2(sides / 32)), 2, 5) - 2)


def test_anchors_are_the_levels_concatenated():
    m = create_detector("faster_rcnn_fpn", image_size=64)
    a = np.asarray(m.anchors)
    counts = [(64 // s) ** 2 * 3 for s in (4, 8, 16, 32)]
    assert a.shape == (sum(counts), 4) and m.rpn_strides == (4, 8, 16, 32)
    start = 0
    for s, size, count in zip((4, 8, 16, 32), (8.0, 16.0, 32.0, 64.0), counts):
        np.testing.assert_allclose(a[start:start + count], anchor_grid((64 // s, 64 // s), s, (size,)), rtol=1e-6)
        area = (a[start:start + count, 2] - a[start:start + count, 0]) * (a[start:start + count, 3] - a[start:start + count, 1])
        np.testing.assert_allclose(area, size ** 2, rtol=1e-4)
        start += count
    p6 = create_detector("faster_rcnn_fpn", image_size=64, fpn_p6=True, fpn_anchor_sizes=(8, 16, 32, 64, 128))
    assert p6.rpn_strides == (4, 8, 16, 32, 64) and p6.roi_strides == (4, 8, 16, 32)
    assert p6.anchors.shape[0] == sum(counts) + 3
    plain = create_detector("faster_rcnn", image_size=64)
    np.testing.assert_array_equal(plain.anchors, anchor_grid((8, 8), 8, (16.0, 24.0, 32.0)))


def test_multi_level_pooling_takes_each_roi_from_its_level():
    m = create_detector("faster_rcnn_fpn", image_size=128)           # eq. 1 with k0 4, canonical 32
    maps = [jax.random.normal(jax.random.PRNGKey(i), (2, 128 // s, 128 // s, 5)) for i, s in enumerate((4, 8, 16, 32))]
    boxes = jnp.asarray([[[0., 0, 6, 6], [2, 2, 22, 20], [0, 0, 100, 120]], [[4, 4, 24, 30], [1, 1, 9, 12], [10, 10, 50, 60]]])
    out = m.apply({}, maps, boxes, 7, method=lambda mod, *a: mod._pool(*a))
    levels = np.asarray(m.roi_levels(boxes))
    assert levels.tolist() == [[0, 1, 3], [1, 0, 2]]
    for i in range(2):
        for r in range(3):
            lv = levels[i, r]
            ref = roi_align(maps[lv], jnp.concatenate([jnp.asarray([float(i)]), boxes[i, r]])[None], 7,
                            1.0 / (4, 8, 16, 32)[lv], sampling_ratio=2, aligned=True)[0]
            np.testing.assert_allclose(out[i, r], ref, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_data():
    return make_shapes(4, image_size=32, seed=0, max_objects=3)


@pytest.mark.parametrize("name", ["faster_rcnn_fpn", "mask_rcnn"])
def test_jitted_loss_and_gradient_reach_the_lateral_convs(name, tiny_data):
    model = _tiny(name, fpn=True)
    with_masks = name == "mask_rcnn"
    batch = shapes_batch(tiny_data, np.arange(4), with_masks)
    x = jnp.asarray(batch["image"], jnp.float32) / 127.5 - 1.0
    targets = {k: jnp.asarray(batch[k]) for k in ("boxes", "classes", "masks") if k in batch}
    v = model.init({"params": jax.random.PRNGKey(0), "sample": jax.random.PRNGKey(1)}, x)

    @jax.jit
    def loss_and_grad(params):
        def f(p):
            (loss, parts), _ = model.apply({**v, "params": p}, x, targets, method="loss", mutable=["batch_stats"],
                                           rngs={"sample": jax.random.PRNGKey(2)})
            return loss, parts
        return jax.value_and_grad(f, has_aux=True)(params)

    (loss, parts), grads = loss_and_grad(v["params"])
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert all(np.isfinite(float(p)) for p in parts.values())
    if with_masks:
        assert float(parts["mask"]) > 0
    for i in range(4):
        assert float(jnp.abs(grads["neck"][f"lateral{i}"]["kernel"]).max()) > 0, i
        assert float(jnp.abs(grads["neck"][f"output{i}"]["kernel"]).max()) > 0, i
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    if with_masks:      # Mask R-CNN + FPN inference: masks pooled from the pyramid, pasted back (static shapes)
        out = jax.jit(lambda variables: model.apply(variables, x[:2]))(v)
        d = model.max_detections
        assert out["boxes"].shape == (2, d, 4) and out["masks"].shape == (2, d, 32, 32)
        assert np.all(np.isfinite(np.asarray(out["masks"])))


def test_without_fpn_the_parameter_tree_has_no_neck():
    x = jnp.zeros((1, 64, 64, 3))
    shapes = jax.eval_shape(lambda: create_detector("faster_rcnn").init(jax.random.PRNGKey(0), x))
    assert sorted(shapes["params"]) == ["bbox_pred", "cls_score", "fc6", "fc7", "features", "rpn_box", "rpn_cls",
                                        "rpn_conv"]
    assert shapes["params"]["fc6"]["kernel"].shape == (7 * 7 * 96, 256)      # pooled from the stride-8 map
    assert shapes["params"]["rpn_cls"]["kernel"].shape == (1, 1, 128, 9)
    fpn = jax.eval_shape(lambda: create_detector("faster_rcnn_fpn").init(jax.random.PRNGKey(0), x))
    assert fpn["params"]["fc6"]["kernel"].shape == (7 * 7 * 64, 256) and "neck" in fpn["params"]
    assert fpn["params"]["rpn_cls"]["kernel"].shape == (1, 1, 128, 3)


def test_bad_fpn_options_are_config_errors():
    x = jnp.zeros((1, 32, 32, 3))
    for kw, match in [({"fpn_taps": ("s4", "s16")}, "doubling"), ({"fpn_taps": ("stage1",)}, "by their stride"),
                      ({"fpn_anchor_sizes": (8.0, 16.0)}, "one size per RPN level"),
                      ({"fpn_p6": True}, "one size per RPN level")]:
        with pytest.raises(ConfigError, match=match):
            _tiny(**kw).init(jax.random.PRNGKey(0), x)


def test_cli_detect_train_faster_rcnn_fpn_smoke(tmp_path):
    r = subprocess.run([sys.executable, "-m", "jaxdl.cli", "detect-train", "--model", "faster_rcnn_fpn", "--smoke",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["model"] == "faster_rcnn_fpn" and saved["steps"] == 2 and 0.0 <= saved["map50"] <= 1.0
    assert "fpn_width" in saved["config"]["model_options"]
