"""Weight import/export without torch: round trips, key maps both ways, and bad input."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import models
from jaxdl.errors import WeightImportError
from jaxdl.transfer import SUPPORTED, Rule, export_torchvision, import_torchvision, read_state_dict
from jaxdl.transfer.keymaps import keymap_for

SMALL = {"stage_sizes": (1, 1, 1, 1), "width": 8}


@pytest.fixture(scope="module")
def resnet_export(tmp_path_factory):
    model = models.create("resnet18", **SMALL)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    # Non-trivial running statistics, so that a dropped or swapped mean/var shows.
    variables = jax.tree_util.tree_map(lambda a: a + jax.random.uniform(jax.random.PRNGKey(1), a.shape), variables)
    path = tmp_path_factory.mktemp("w") / "resnet18.safetensors"
    shapes = export_torchvision("resnet18", variables, path, model_options=SMALL)
    return variables, path, shapes


def test_rule_runs_both_ways():
    rule = Rule("features.denseblock{i}.denselayer{j+1}.{part:w}", "stage{i}_layer{j}/{part:w}")
    assert rule.to_jax("features.denseblock2.denselayer1.conv1") == "stage2_layer0/conv1"
    assert rule.to_torch("stage2_layer0/conv1") == "features.denseblock2.denselayer1.conv1"
    assert rule.to_jax("features.denseblock2.denselayer1.conv1.extra") is None


def test_export_keys_are_torchvision_names(resnet_export):
    _, _, shapes = resnet_export
    assert shapes["conv1.weight"] == (8, 3, 7, 7)  # OIHW
    assert shapes["layer2.0.downsample.0.weight"] == (16, 8, 1, 1)
    assert shapes["layer2.0.downsample.1.running_var"] == (16,)
    assert shapes["fc.weight"] == (1000, 64)  # (out, in)
    assert "layer1.0.bn2.num_batches_tracked" in shapes


def test_round_trip_is_exact(resnet_export):
    variables, path, _ = resnet_export
    back = import_torchvision("resnet18", path, model_options=SMALL)
    flat_a = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables))
    flat_b = flax.traverse_util.flatten_dict(back)
    assert set(flat_a) == set(flat_b)
    for key in flat_a:
        np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]), err_msg=str(key))


def test_flatten_permutation_round_trips(tmp_path):
    # VGG fc6 follows a flatten of a 7x7x512 map: export permutes rows to C,H,W and import back.
    opts = {"classifier_width": 8, "blocks": models.vgg.CONFIGS["A"]}
    model = models.create("vgg11", **opts)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    export_torchvision("vgg11", variables, tmp_path / "v.safetensors", model_options=opts)
    state, _ = read_state_dict(tmp_path / "v.safetensors")
    kernel = np.asarray(variables["params"]["fc6"]["kernel"])  # rows in (h, w, c) order
    w = state["classifier.0.weight"]  # (out, c*h*w)
    h, wd, c = 3, 5, 17
    assert np.allclose(w[:, c * 49 + h * 7 + wd], kernel[(h * 7 + wd) * 512 + c, :])
    back = import_torchvision("vgg11", tmp_path / "v.safetensors", model_options=opts)
    np.testing.assert_array_equal(np.asarray(back["params"]["fc6"]["kernel"]), kernel)


# The parity tests run one member of each family numerically (some at reduced depth); this checks
# the full-size key map of the deepest/widest other members, shape-only (jax.eval_shape).
FULL_KEYMAP_CASES = ("alexnet", "vgg19", "vgg16_bn", "googlenet", "inception_v3", "resnet34", "resnext101_32x8d",
                     "wide_resnet101_2", "densenet161", "squeezenet1_0", "mobilenet_v2")


def test_supported_list():
    assert set(FULL_KEYMAP_CASES) <= set(SUPPORTED) and len(SUPPORTED) == 27


@pytest.mark.parametrize("name", FULL_KEYMAP_CASES)
def test_full_size_key_map(name):
    """Every parameter of the full-size model has a torchvision name, and the name maps back."""
    model = models.create(name)
    shape = models.info(name).input_shape
    tree = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape))))
    keymap = keymap_for(name)
    modules = {"/".join(k[:-1]) for k in flax.traverse_util.flatten_dict(tree["params"])}
    for module in modules:
        torch_name = keymap.to_torch(model, module)
        assert torch_name is not None, f"{name}: {module} has no torchvision name"
        assert keymap.to_jax(model, torch_name) == module


# ---------------------------------------------------------------------------------------------
# Bad input: one clear error naming what is wrong.

def test_missing_key_is_named(resnet_export):
    _, path, _ = resnet_export
    state, _ = read_state_dict(path)
    del state["layer3.0.bn1.running_mean"]
    with pytest.raises(WeightImportError, match=r"missing.*stage3_block0/bn1/mean"):
        import_torchvision("resnet18", state, model_options=SMALL)


def test_unexpected_key_is_named(resnet_export):
    _, path, _ = resnet_export
    state, _ = read_state_dict(path)
    state["layer9.0.conv1.weight"] = np.zeros((1,))
    with pytest.raises(WeightImportError, match=r"unexpected source key.*layer9\.0\.conv1\.weight"):
        import_torchvision("resnet18", state, model_options=SMALL)


def test_shape_mismatch_is_named(resnet_export):
    _, path, _ = resnet_export
    state, _ = read_state_dict(path)
    state["fc.weight"] = np.zeros((10, 64), np.float32)
    state["fc.bias"] = np.zeros((10,), np.float32)
    with pytest.raises(WeightImportError, match=r"shape mismatch.*fc\.weight \(10, 64\)"):
        import_torchvision("resnet18", state, model_options=SMALL)


def test_wrong_model_weights_fail_loudly(resnet_export):
    _, path, _ = resnet_export
    with pytest.raises(WeightImportError, match="cannot import"):
        import_torchvision("densenet121", path)


@pytest.mark.parametrize("name,message", [("resnet_18", "unknown model"), ("lenet5", "no torchvision counterpart")])
def test_bad_model_name(resnet_export, name, message):
    with pytest.raises(WeightImportError, match=message):
        import_torchvision(name, resnet_export[1])


def test_bad_files(tmp_path):
    with pytest.raises(WeightImportError, match="does not exist"):
        import_torchvision("resnet18", tmp_path / "nope.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightImportError, match="not a readable safetensors file"):
        import_torchvision("resnet18", garbage)
    other = tmp_path / "weights.h5"
    other.write_bytes(b"x")
    with pytest.raises(WeightImportError, match="unknown weights format"):
        import_torchvision("resnet18", other)
    with pytest.raises(WeightImportError, match="must be a .safetensors"):
        import_torchvision("resnet18", 42)


def test_export_rejects_foreign_variables(tmp_path):
    variables = jax.jit(models.create("lenet5").init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))
    with pytest.raises(WeightImportError, match="do not belong to resnet18"):
        export_torchvision("resnet18", variables, tmp_path / "x.safetensors", model_options=SMALL)
    assert not (tmp_path / "x.safetensors").exists()
