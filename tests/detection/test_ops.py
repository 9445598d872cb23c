"""Box ops, anchors, NMS and RoI pooling against direct numpy loops and torchvision.ops."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.detection.anchors import anchor_grid, ssd_default_boxes, ssd_scales
from jaxdl.detection.boxes import box_iou, clip_boxes, decode_boxes, encode_boxes
from jaxdl.detection.nms import batched_nms, nms
from jaxdl.errors import ConfigError
from jaxdl.nn.roi import roi_align, roi_pool


def random_boxes(rng, n, size=64.0, min_wh=1.0, max_wh=30.0):
    xy = rng.uniform(0, size - max_wh, (n, 2))
    wh = rng.uniform(min_wh, max_wh, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


# ----------------------------------------------------------------------------- numpy references
def np_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def np_nms(boxes, scores, thr):
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if np_iou(boxes[i:i + 1], boxes[j:j + 1])[0, 0] <= thr]
    return keep


def np_roi_pool(feat, rois, ph, pw, scale):
    n, h, w, c = feat.shape
    out = np.zeros((len(rois), ph, pw, c), np.float32)
    rnd = lambda v: math.floor(v + 0.5)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        x1, y1, x2, y2 = (rnd(v * scale) for v in roi[1:])
        rw, rh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        for i in range(ph):
            for j in range(pw):
                hs = min(max(math.floor(i * rh / ph) + y1, 0), h)
                he = min(max(math.ceil((i + 1) * rh / ph) + y1, 0), h)
                ws = min(max(math.floor(j * rw / pw) + x1, 0), w)
                we = min(max(math.ceil((j + 1) * rw / pw) + x1, 0), w)
                if he > hs and we > ws:
                    out[r, i, j] = feat[b, hs:he, ws:we].reshape(-1, c).max(0)
    return out


def np_bilinear(fm, y, x):
    h, w, _ = fm.shape
    if y < -1 or y > h or x < -1 or x > w:
        return np.zeros(fm.shape[-1])
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(y), int(x)
    if yl >= h - 1:
        yl = yh = h - 1
        y = yl
    else:
        yh = yl + 1
    if xl >= w - 1:
        xl = xh = w - 1
        x = xl
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    return ((1 - ly) * (1 - lx) * fm[yl, xl] + (1 - ly) * lx * fm[yl, xh]
            + ly * (1 - lx) * fm[yh, xl] + ly * lx * fm[yh, xh])


def np_roi_align(feat, rois, ph, pw, scale, sampling, aligned):
    out = np.zeros((len(rois), ph, pw, feat.shape[-1]))
    off = 0.5 if aligned else 0.0
    for r, roi in enumerate(rois):
        fm = feat[int(roi[0])]
        x1, y1, x2, y2 = (v * scale - off for v in roi[1:])
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling if sampling > 0 else math.ceil(rh / ph)
        gw = sampling if sampling > 0 else math.ceil(rw / pw)
        for i in range(ph):
            for j in range(pw):
                acc = 0.0
                for iy in range(gh):
                    for ix in range(gw):
                        acc = acc + np_bilinear(fm, y1 + i * bh + (iy + 0.5) * bh / gh, x1 + j * bw + (ix + 0.5) * bw / gw)
                out[r, i, j] = acc / max(gh * gw, 1)
    return out


def random_rois(rng, n, batch, size):
    boxes = random_boxes(rng, n, size, 0.5, size / 2)
    # some RoIs partly outside the image
    boxes[: n // 4] -= size / 8
    return np.concatenate([rng.integers(0, batch, (n, 1)).astype(np.float32), boxes], 1)


# ----------------------------------------------------------------------------- boxes
def test_box_iou_matches_numpy_and_handles_empty_boxes():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 7), random_boxes(rng, 5)
    np.testing.assert_allclose(np.asarray(jax.jit(box_iou)(a, b)), np_iou(a, b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(box_iou(jnp.zeros((1, 4)), jnp.zeros((1, 4))), [[0.0]])
    np.testing.assert_allclose(box_iou(jnp.array([[0., 0, 2, 2]]), jnp.array([[1., 1, 3, 3]])), [[1 / 7]], rtol=1e-6)


def test_encode_decode_round_trip_and_closed_form():
    rng = np.random.default_rng(1)
    boxes, anchors = random_boxes(rng, 20), random_boxes(rng, 20)
    for weights in [(1, 1, 1, 1), (10, 10, 5, 5)]:
        d = encode_boxes(boxes, anchors, weights)
        np.testing.assert_allclose(decode_boxes(d, anchors, weights), boxes, rtol=1e-4, atol=1e-3)
    d = np.asarray(encode_boxes(boxes, anchors, (10, 10, 5, 5)))
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    np.testing.assert_allclose(d[:, 0], 10 * ((boxes[:, 0] + bw / 2) - (anchors[:, 0] + aw / 2)) / aw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d[:, 3], 5 * np.log(bh / ah), rtol=1e-4, atol=1e-4)
    # log-size clip: a huge delta stays finite
    big = decode_boxes(jnp.array([[0., 0, 100, 100]]), jnp.array([[0., 0, 16, 16]]))
    np.testing.assert_allclose(big[0, 2] - big[0, 0], 1000.0, rtol=1e-4)


def test_clip_boxes():
    out = clip_boxes(jnp.array([[-5., 3, 70, 80]]), (60, 64))
    np.testing.assert_allclose(out, [[0, 3, 64, 60]])


def test_torchvision_box_iou():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, 30), random_boxes(rng, 40)
    ref = tv.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b), ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- anchors
def test_anchor_grid_areas_ratios_and_centres():
    a = anchor_grid((2, 3), 16, sizes=(32, 64), aspect_ratios=(0.5, 1.0, 2.0))
    assert a.shape == (2 * 3 * 6, 4)
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    np.testing.assert_allclose((w * h)[:6], [32 ** 2] * 3 + [64 ** 2] * 3, rtol=1e-5)
    np.testing.assert_allclose((h / w)[:3], [0.5, 1, 2], rtol=1e-5)
    centres = (a[:, :2] + a[:, 2:]) / 2
    np.testing.assert_allclose(centres[0], [8, 8])
    np.testing.assert_allclose(centres[6], [24, 8])      # next column
    np.testing.assert_allclose(centres[18], [8, 24])     # next row
    with pytest.raises(ConfigError, match="sizes"):
        anchor_grid((2, 2), 16, sizes=())


def test_ssd_default_boxes_follow_the_paper():
    np.testing.assert_allclose(ssd_scales(6), [0.2, 0.34, 0.48, 0.62, 0.76, 0.9])
    boxes = ssd_default_boxes([4, 2], 100, aspect_ratios=[(2.0,), (2.0, 3.0)], clip=False)
    assert boxes.shape == (4 * 4 * 4 + 2 * 2 * 6, 4)
    first = boxes[:4]   # cell (0, 0) of map 0: scale 0.2, extra sqrt(0.2 * 0.9), ratio 2 and 1/2
    wh = first[:, 2:] - first[:, :2]
    s0, s1 = 0.2, 0.9
    np.testing.assert_allclose(wh / 100, [[s0, s0], [math.sqrt(s0 * s1)] * 2, [s0 * math.sqrt(2), s0 / math.sqrt(2)],
                                          [s0 / math.sqrt(2), s0 * math.sqrt(2)]], rtol=1e-5)
    np.testing.assert_allclose((first[0, :2] + first[0, 2:]) / 2, [12.5, 12.5], rtol=1e-5)


# ----------------------------------------------------------------------------- nms
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_greedy_numpy(thr):
    rng = np.random.default_rng(3)
    boxes, scores = random_boxes(rng, 60, max_wh=20), rng.uniform(size=60).astype(np.float32)
    idx, ok = jax.jit(nms, static_argnums=(2, 3))(boxes, scores, thr, 80)
    ref = np_nms(boxes, scores, thr)
    got = np.asarray(idx)[np.asarray(ok)]
    assert list(got) == ref
    assert np.all(np.asarray(idx)[~np.asarray(ok)] == -1)
    idx5, ok5 = nms(boxes, scores, thr, 5)
    assert list(np.asarray(idx5)) == ref[:5]


def test_nms_score_threshold_valid_mask_and_vmap():
    rng = np.random.default_rng(4)
    boxes = np.stack([random_boxes(rng, 30) for _ in range(3)])
    scores = rng.uniform(size=(3, 30)).astype(np.float32)
    idx, ok = jax.vmap(lambda b, s: nms(b, s, 0.5, 10, score_threshold=0.5))(boxes, scores)
    for i in range(3):
        sel = scores[i] > 0.5
        ref = np.flatnonzero(sel)[np_nms(boxes[i][sel], scores[i][sel], 0.5)]
        assert list(np.asarray(idx[i])[np.asarray(ok[i])]) == list(ref[:10])


def test_batched_nms_is_class_aware():
    boxes = jnp.array([[0., 0, 10, 10], [0, 0, 10, 10.5], [0, 0, 10, 10]])
    scores = jnp.array([0.9, 0.8, 0.7])
    idx, ok = batched_nms(boxes, scores, jnp.array([0, 0, 1]), 0.5, 3)
    assert list(np.asarray(idx)[np.asarray(ok)]) == [0, 2]
    idx, ok = nms(boxes, scores, 0.5, 3)
    assert list(np.asarray(idx)[np.asarray(ok)]) == [0]


def test_torchvision_nms_and_batched_nms():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    rng = np.random.default_rng(5)
    boxes, scores = random_boxes(rng, 200, max_wh=25), rng.uniform(size=200).astype(np.float32)
    cls = rng.integers(0, 3, 200)
    for thr in (0.3, 0.6):
        ref = tv.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
        idx, ok = nms(boxes, scores, thr, 200)
        np.testing.assert_array_equal(np.asarray(idx)[np.asarray(ok)], ref)
        ref = tv.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(cls), thr).numpy()
        idx, ok = batched_nms(boxes, scores, cls, thr, 200)
        np.testing.assert_array_equal(np.asarray(idx)[np.asarray(ok)], ref)


# ----------------------------------------------------------------------------- RoI ops
@pytest.fixture(scope="module")
def feat_rois():
    rng = np.random.default_rng(6)
    feat = rng.normal(size=(2, 12, 10, 3)).astype(np.float32)
    rois = random_rois(rng, 16, 2, 40.0)
    return feat, rois


def test_roi_pool_matches_numpy(feat_rois):
    feat, rois = feat_rois
    got = jax.jit(lambda f, r: roi_pool(f, r, (3, 2), spatial_scale=0.25))(feat, rois)
    np.testing.assert_allclose(got, np_roi_pool(feat, rois, 3, 2, 0.25), rtol=1e-6)


@pytest.mark.parametrize("sampling,aligned", [(2, False), (1, True), (0, False), (-1, True)])
def test_roi_align_matches_numpy(feat_rois, sampling, aligned):
    feat, rois = feat_rois
    got = jax.jit(lambda f, r: roi_align(f, r, 3, 0.25, sampling, aligned))(feat, rois)
    np.testing.assert_allclose(got, np_roi_align(feat, rois, 3, 3, 0.25, sampling, aligned), rtol=1e-4, atol=1e-5)


def test_roi_ops_are_differentiable(feat_rois):
    feat, rois = feat_rois
    g = jax.grad(lambda f: roi_pool(f, rois, 2, 0.25).sum())(feat)
    assert g.shape == feat.shape and float(jnp.abs(g).sum()) > 0
    # each output bin routes gradient 1 to exactly one input (its maximum)
    assert float(g.sum()) == pytest.approx(float(np.sum(np_roi_pool(feat, rois, 2, 2, 0.25) != 0)))
    # RoI Align: gradient w.r.t. features matches a finite difference, and w.r.t. box coordinates exists
    f = lambda x: jnp.sum(roi_align(x, rois, 2, 0.25, 2) ** 2)
    d = np.random.default_rng(7).normal(size=feat.shape).astype(np.float32)
    eps = 1e-2
    fd = (f(feat + eps * d) - f(feat - eps * d)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(jax.grad(f)(feat), d), fd, rtol=2e-3)
    gr = jax.grad(lambda r: roi_align(feat, r, 2, 0.25, 2).sum())(jnp.asarray(rois))
    assert np.all(np.isfinite(gr)) and float(jnp.abs(gr[:, 1:]).sum()) > 0


def test_roi_bad_shapes_raise():
    with pytest.raises(ConfigError, match=r"rois \[R, 5\]"):
        roi_align(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 4)), 2)
    with pytest.raises(ConfigError, match="features"):
        roi_pool(jnp.zeros((4, 4, 1)), jnp.zeros((3, 5)), 2)


def test_torchvision_roi_pool_and_roi_align(feat_rois):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    feat, rois = feat_rois
    tfeat = torch.from_numpy(feat.transpose(0, 3, 1, 2).copy())
    trois = torch.from_numpy(rois)
    ref = tv.ops.roi_pool(tfeat, trois, (3, 2), 0.25).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(roi_pool(feat, rois, (3, 2), 0.25), ref, rtol=1e-6)
    for sampling, aligned in [(2, False), (2, True), (-1, False)]:
        ref = tv.ops.roi_align(tfeat, trois, (4, 3), 0.25, sampling, aligned).numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(roi_align(feat, rois, (4, 3), 0.25, sampling, aligned), ref, rtol=1e-4, atol=1e-5)
