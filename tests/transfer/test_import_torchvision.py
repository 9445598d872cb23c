"""Parity of imported torchvision weights: jaxdl logits == torchvision logits (random weights).

Each case builds torchvision's own model with random weights, randomizes the BatchNorm running
statistics (so that a wrong mean/var mapping or epsilon shows), runs both in eval mode on the
same random input and compares logits: max |diff| <= 1e-4 * max |logit|.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxdl import models  # noqa: E402
from jaxdl.transfer import export_torchvision, import_torchvision, torchvision_transform_input  # noqa: E402

RTOL = 1e-4


def randomize_bn(model):
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                module.weight.copy_(1 + 0.1 * torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
    return model.eval()


def build(name: str):
    """torchvision model for a case name; ``"name:small"`` is the same class at reduced depth/width."""
    torch.manual_seed(0)
    tvm = torchvision.models
    small = {
        # Same classes and key names as the full models; fewer blocks/narrower FCs keep CPU time low.
        "resnet50:small": lambda: tvm.ResNet(tvm.resnet.Bottleneck, [1, 1, 1, 1]),
        "wide_resnet50_2:small": lambda: tvm.ResNet(tvm.resnet.Bottleneck, [1, 1, 1, 1], width_per_group=128),
        "resnext50_32x4d:small": lambda: tvm.ResNet(tvm.resnet.Bottleneck, [1, 1, 1, 1], groups=32,
                                                    width_per_group=4),
        "densenet121:small": lambda: tvm.DenseNet(32, (2, 2, 2, 2), 64),
    }
    if name in small:
        model = small[name]()
    elif name in ("googlenet", "inception_v3"):
        model = getattr(tvm, name)(weights=None, init_weights=True, aux_logits=True)
    else:
        model = getattr(tvm, name)(weights=None)
    if name.startswith(("vgg", "alexnet")):
        # 4096-wide fc6/fc7 cost seconds to initialize; 64 keeps fc6's flatten (the part that can go wrong).
        fc = [i for i, m in enumerate(model.classifier) if isinstance(m, torch.nn.Linear)]
        model.classifier[fc[0]] = torch.nn.Linear(model.classifier[fc[0]].in_features, 64)
        model.classifier[fc[1]] = torch.nn.Linear(64, 64)
        model.classifier[fc[2]] = torch.nn.Linear(64, 1000)
    return randomize_bn(model)


SMALL_OPTIONS = {
    "resnet50:small": {"stage_sizes": (1, 1, 1, 1)},
    "wide_resnet50_2:small": {"stage_sizes": (1, 1, 1, 1)},
    "resnext50_32x4d:small": {"stage_sizes": (1, 1, 1, 1)},
    "densenet121:small": {"block_config": (2, 2, 2, 2)},
}


def compare(case: str, size: int, batch: int = 1, *, model_options=None, transform=False, tmodel=None):
    name = case.split(":")[0]
    options = {**SMALL_OPTIONS.get(case, {}), **(model_options or {})}
    if case.startswith(("vgg", "alexnet")):
        options["classifier_width"] = 64
    tmodel = build(case) if tmodel is None else tmodel
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x))
    expected = getattr(expected, "logits", expected).numpy()
    variables = import_torchvision(name, tmodel.state_dict(), model_options=options)
    model = models.create(name, **options)
    xj = jnp.asarray(x.transpose(0, 2, 3, 1))
    if transform:
        xj = torchvision_transform_input(xj)
    got = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, xj))
    assert got.shape == expected.shape
    scale = np.abs(expected).max()
    assert scale > 0
    diff = np.abs(got - expected).max()
    assert diff <= RTOL * scale, f"{case}: max |diff| {diff:.3g} vs max |logit| {scale:.3g}"
    return tmodel, variables


CASES = [
    # case, input size (smallest valid or cheap), batch
    ("alexnet", 63, 1),          # 63: the smallest input whose conv5 pool is 1x1 (adaptive pool to 6x6)
    ("vgg11", 32, 1),
    ("vgg11_bn", 32, 2),
    ("googlenet", 32, 2),
    ("inception_v3", 75, 1),     # 75: the smallest input of the main path
    ("resnet18", 32, 2),
    ("resnet50:small", 32, 1),
    ("wide_resnet50_2:small", 32, 1),
    ("resnext50_32x4d:small", 32, 1),
    ("densenet121:small", 32, 1),
    ("squeezenet1_0", 35, 2),    # 35: ceil-mode pools down to a 1x1 map
    ("squeezenet1_1", 35, 2),
    ("mobilenet_v2", 32, 2),
]


@pytest.mark.parametrize("case,size,batch", CASES, ids=[c[0] for c in CASES])
def test_parity(case, size, batch):
    options = {"aux_logits": False} if case == "inception_v3" else None  # aux head needs >= 299 px
    compare(case, size, batch, model_options=options)


def test_export_loads_into_torchvision_strictly(tmp_path):
    """jaxdl -> .safetensors with torchvision keys -> torchvision load_state_dict(strict=True): same logits."""
    from safetensors.torch import load_file

    tmodel, variables = compare("resnet50:small", 32, 1)
    path = tmp_path / "resnet50.safetensors"
    export_torchvision("resnet50", variables, path, model_options=SMALL_OPTIONS["resnet50:small"])
    fresh = torchvision.models.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1]).eval()
    fresh.load_state_dict(load_file(str(path)), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(fresh(x).numpy(), tmodel(x).numpy(), rtol=0, atol=1e-6)


def test_transform_input_matches_torchvision():
    tmodel = torchvision.models.googlenet(weights=None, init_weights=False, aux_logits=False, transform_input=True)
    x = torch.randn(2, 3, 8, 8)
    expected = tmodel._transform_input(x).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(torchvision_transform_input(jnp.asarray(x.numpy().transpose(0, 2, 3, 1))))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_pth_file_is_read(tmp_path):
    tmodel = build("squeezenet1_1")
    path = tmp_path / "w.pth"
    torch.save({"state_dict": tmodel.state_dict()}, path)  # a nested training checkpoint
    variables = import_torchvision("squeezenet1_1", path)
    np.testing.assert_allclose(np.asarray(variables["params"]["conv1"]["kernel"]),
                               tmodel.state_dict()["features.0.weight"].numpy().transpose(2, 3, 1, 0))
