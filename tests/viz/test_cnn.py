"""What-a-CNN-learned plots: filters, feature maps, top patches (receptive fields), saliency, visualize_run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxdl import models
from jaxdl.viz import (feature_maps, first_conv_kernel, plot_feature_maps, plot_patches, plot_saliency,
                       saliency_map, top_activating_patches, visualize_run)


def _png(path):
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        return img.size


@pytest.fixture(scope="module")
def lenet():
    model = models.create("lenet5", num_classes=10)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))
    images = np.random.default_rng(0).uniform(-1, 1, (40, 32, 32, 1)).astype(np.float32)
    return model, variables, images


def test_first_conv_kernel_follows_call_order():
    model = models.create("resnet18", num_classes=3, stage_sizes=(1, 1, 1, 1), width=8)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
    variables = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), variables)
    variables["params"]["stem_conv"]["kernel"] = np.ones((7, 7, 3, 8), np.float32)
    kernel = first_conv_kernel(model, variables, (32, 32, 3))
    assert kernel.shape == (7, 7, 3, 8) and kernel.min() == 1  # stem_conv, not stage1_block0/conv1


def test_feature_maps_and_plot(lenet, tmp_path):
    model, variables, images = lenet
    maps = feature_maps(model, variables, images[0], "c1")
    assert maps.shape == (28, 28, 6)
    expected = model.apply(variables, images[:1], features=("c1",))["c1"][0]
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    assert _png(plot_feature_maps(maps, tmp_path / "maps.png", image=images[0]))[0] > 0
    with pytest.raises(ValueError, match="vector tap"):
        plot_feature_maps(np.zeros(84), tmp_path / "bad.png")


def test_top_patches_are_the_top_images_and_receptive_fields(lenet, tmp_path):
    model, variables, images = lenet
    patches = top_activating_patches(model, variables, images, "c1", channel=2, k=4)
    acts = np.asarray(model.apply(variables, images, features=("c1",))["c1"])[..., 2].reshape(40, -1).max(1)
    assert [p["index"] for p in patches] == list(np.argsort(-acts)[:4])
    np.testing.assert_allclose([p["activation"] for p in patches], np.sort(acts)[::-1][:4], rtol=1e-5)
    for p in patches:
        assert p["patch"].shape == (5, 5, 1)  # c1 is a 5x5 VALID conv: every unit sees 5x5 pixels
        i, j = p["location"]
        assert p["box"] == (i, j, i + 5, j + 5)
    deeper = top_activating_patches(model, variables, images, "c3", channel=0, k=2)
    assert deeper[0]["patch"].shape == (14, 14, 1)  # 5 + 1 (2x2/2 pool) + 4 * 2 (5x5 conv at stride 2)
    assert _png(plot_patches(patches, tmp_path / "patches.png"))[0] > 0


def test_saliency_is_the_input_gradient():
    """A perceptron's score is x . W[:, k] + b, so its saliency is exactly |W[:, k]|."""
    model = models.create("perceptron", num_classes=10)
    x = np.random.default_rng(1).uniform(0, 1, (28, 28, 1)).astype(np.float32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x[None])
    saliency, label = saliency_map(model, variables, x, label=3)
    kernel = np.asarray(jax.tree_util.tree_leaves({k: v for k, v in variables["params"].items()})[1])
    assert label == 3 and saliency.shape == (28, 28)
    np.testing.assert_allclose(saliency, np.abs(kernel[:, 3]).reshape(28, 28), rtol=1e-6)


def test_saliency_matches_finite_differences(lenet, tmp_path):
    model, variables, images = lenet
    x = images[0]
    saliency, label = saliency_map(model, variables, x)
    logits = np.asarray(model.apply(variables, x[None]))
    assert label == int(logits.argmax())
    score = jax.jit(lambda z: model.apply(variables, z[None])[0, label])
    f = lambda z: float(score(z.astype(np.float32)))  # noqa: E731
    h = 1e-2
    for (r, c) in ((10, 12), (16, 16)):
        bump = np.zeros_like(x)
        bump[r, c, 0] = h
        fd = (f(x + bump) - f(x - bump)) / (2 * h)
        assert abs(abs(fd) - saliency[r, c]) <= 2e-2 * max(1e-3, saliency.max())
    assert _png(plot_saliency(x, saliency, tmp_path / "s.png"))[0] > 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from jaxdl.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("viz") / "run"
    fit(TrainConfig(model="lenet5", dataset="digits", epochs=1, batch_size=32, steps_per_epoch=2, train_limit=128,
                    test_limit=64), out, progress=False, log=lambda s: None)
    return out


def test_visualize_run_writes_every_png(tiny_run, tmp_path):
    written = visualize_run(tiny_run, tmp_path / "viz", taps=("c1",), channels=(0,), patch_images=16, k=4)
    assert sorted(p.name for p in written) == ["feature_maps_c1.png", "filters.png", "patches_c1_c0.png",
                                               "saliency.png"]
    for p in written:
        _png(p)


def test_cli_extract_and_visualize_errors(tiny_run, tmp_path, capsys):
    from jaxdl.cli import main

    assert main(["extract", str(tiny_run), "--tap", "f6", "--tap", "c5", "--split", "test",
                 "--out", str(tmp_path / "f.npz"), "--batch-size", "24", "--no-progress"]) == 0
    with np.load(tmp_path / "f.npz") as f:
        assert f["test_f6"].shape == (64, 84) and f["test_c5"].shape == (64, 1, 1, 120)
        assert f["test_labels"].shape == (64,)
        # the same features as the model computes on the run's own preprocessing
        assert np.all(np.isfinite(f["test_f6"])) and np.abs(f["test_f6"]).max() > 0
    assert main(["visualize", str(tmp_path / "nothing")]) == 2
    assert "not a jaxdl run folder" in capsys.readouterr().err
