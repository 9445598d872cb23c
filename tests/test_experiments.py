"""Experiment scripts: every script runs in --smoke mode; the demo and a real-data run reach their numbers."""

import importlib.util
from pathlib import Path

import pytest

from jaxdl import data

ROOT = Path(__file__).resolve().parents[1]
# The detection runs have their own command line; tests/detection/test_detectors.py runs them.
DETECTION_SCRIPTS = ("yolo_v1_shapes", "ssd_shapes", "faster_rcnn_shapes", "faster_rcnn_fpn_shapes", "mask_rcnn_shapes",
                     "fast_rcnn_shapes", "rcnn_shapes")
SCRIPTS = sorted(p for p in (ROOT / "experiments").glob("*.py")
                 if p.stem not in ("model_table",) + DETECTION_SCRIPTS)


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fashion_available() -> bool:
    try:
        data.locate("fashion_mnist", "train")
        return True
    except Exception:
        return False


NEEDS_FASHION = pytest.mark.skipif(not fashion_available(),
                                   reason="Fashion-MNIST not found: apt-get install dataset-fashion-mnist "
                                          "(or jaxdl download fashion_mnist)")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_has_config_and_runs_in_smoke_mode(path, tmp_path):
    module = load_script(path)
    assert module.main.__doc__ is not None or module.__doc__, "a script documents its command and result"
    assert "Command" in module.__doc__
    if "fashion" in path.stem and not fashion_available():
        pytest.skip("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")
    if path.stem in ("benchmark", "torch_side_by_side", "conv_cpu"):  # timing scripts: a JSON report, no training run
        assert module.main(["--smoke", "--out", str(tmp_path)]) == 0
        assert (tmp_path / f"{path.stem}.json").is_file()
        if path.stem == "torch_side_by_side":  # by default every variant ran in its own process
            import json

            report = json.loads((tmp_path / f"{path.stem}.json").read_text())
            assert report["config"]["isolation"] == "process"
            import jax

            assert report["device"] == jax.devices()[0].platform  # as the workers reported it
            assert report["results"] and all(r["images_per_second"] > 0 for r in report["results"])
        return
    if path.stem == "zoo_fashion_mnist":
        assert module.main(["--smoke", "--models", "resnet20", "--out", str(tmp_path)]) == 0
        assert (tmp_path / "resnet20" / "summary.json").is_file()
        return
    summary = module.main(["--smoke", "--out", str(tmp_path / "run"), "--no-progress"])
    if hasattr(module, "check_smoke"):  # scripts that are not image classifiers say what their smoke run must show
        module.check_smoke(summary)
        return
    assert summary["epochs"] == 1 and 0.0 <= summary["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_demo_reaches_98_percent_on_digits(tmp_path):
    """`make demo`'s configuration, in full: LeNet-5 on the real digits must reach >= 98% test accuracy."""
    module = load_script(ROOT / "experiments" / "lenet5_digits.py")
    summary = module.main(["--out", str(tmp_path / "demo"), "--no-progress"])
    assert summary["epochs"] == 30
    assert summary["test_accuracy"] >= 0.98, summary["test_accuracy"]


@pytest.mark.slow
@NEEDS_FASHION
def test_mlp_learns_real_fashion_mnist(tmp_path):
    """Two epochs of the MLP on all 60,000 real Fashion-MNIST images: the reader and pipeline are right."""
    import dataclasses

    module = load_script(ROOT / "experiments" / "mlp_fashion_mnist.py")
    config = dataclasses.replace(module.get_config(), epochs=2)
    from jaxdl.train import fit

    summary = fit(config, tmp_path / "mlp", progress=False, log=lambda s: None)
    assert summary["train_examples"] == 60000 and summary["test_examples"] == 10000
    assert summary["test_accuracy"] >= 0.84, summary["test_accuracy"]


def test_side_by_side_in_process_and_variant_choice(tmp_path):
    """--isolation in-process and --variants: only the chosen variants are timed, in this process;
    an unknown variant is a usage error (exit 2)."""
    import json

    module = load_script(ROOT / "experiments" / "torch_side_by_side.py")
    out = tmp_path / "sbs.json"
    assert module.main(["--smoke", "--isolation", "in-process", "--variants", "jaxdl-stock,torch",
                        "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["config"]["isolation"] == "in-process"
    assert "jaxdl_revision" in report  # the commit (or None outside a git checkout) the figures came from
    labels = [r["variant"] for r in report["results"]]
    torch_installed = importlib.util.find_spec("torch") is not None
    assert labels == (["jaxdl (stock flax Conv)", "torch eager"] if torch_installed else ["jaxdl (stock flax Conv)"])
    assert all(r["images_per_second"] > 0 and r["first_step_seconds"] > 0 for r in report["results"])
    with pytest.raises(SystemExit) as err:
        module.main(["--smoke", "--variants", "jaxdl,resnet"])
    assert err.value.code == 2


def test_side_by_side_worker_failure_is_one_clear_error():
    """A worker that fails is reported with its exit code and the end of its stderr."""
    module = load_script(ROOT / "experiments" / "torch_side_by_side.py")
    cfg = dict(module.smoke_config())
    with pytest.raises(RuntimeError, match=r"the nope worker failed \(exit 2\): .*unknown variant nope"):
        module.run_worker("nope", "resnet18", cfg)


def test_side_by_side_runs_each_variant_under_each_allocator(tmp_path):
    """--allocators tcmalloc,system: a row per variant and allocator, each recording the allocator its
    worker really ran with (read from the worker's /proc/self/maps); bad choices are usage errors."""
    import json
    import os

    from jaxdl import runtime

    module = load_script(ROOT / "experiments" / "torch_side_by_side.py")
    if runtime.find_tcmalloc() is None and not os.environ.get("JAXDL_EXPECT_TCMALLOC"):  # set by .ci/run
        pytest.skip("tcmalloc not installed (apt-get install libtcmalloc-minimal4)")
    out = tmp_path / "sbs.json"
    assert module.main(["--smoke", "--variants", "jaxdl-stock", "--allocators", "tcmalloc,system",
                        "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["config"]["allocators"] == ["tcmalloc", "system"]
    rows = {r["variant"]: r["allocator"] for r in report["results"]}
    assert rows == {"jaxdl (stock flax Conv) [tcmalloc]": "tcmalloc", "jaxdl (stock flax Conv) [system]": "system"}
    for bad in (["--allocators", "jemalloc"], ["--allocators", "system,system"],
                ["--allocators", "system", "--isolation", "in-process"]):
        with pytest.raises(SystemExit) as err:
            module.main(["--smoke", "--variants", "jaxdl-stock", *bad])
        assert err.value.code == 2


def test_side_by_side_torch_half_precision_is_autocast_on_every_device():
    """--dtype bfloat16 / float16: torch autocasts (on CPU too), so it computes in jaxdl's dtype."""
    module = load_script(ROOT / "experiments" / "torch_side_by_side.py")
    assert module.torch_precision("float32") == (False, "float32", False)
    assert module.torch_precision("bfloat16") == (True, "bfloat16", False)
    assert module.torch_precision("float16") == (True, "float16", True)
    with pytest.raises(ValueError, match="float8"):
        module.torch_precision("float8")
    if importlib.util.find_spec("torch") is not None:  # a real half-precision step runs on this device
        module.torch_step("resnet18", 2, 16, "bfloat16", False, False, True)(1)


def test_side_by_side_torch_cifar_resnet_is_jaxdls_network(tmp_path):
    """The PyTorch twin of the CIFAR ResNets (torchvision has none) has jaxdl's layers: the same parameter
    shapes (convs transposed from OIHW to HWIO) and count, for ResNet-20 and ResNet-56, and a forward pass
    gives 10 logits; unknown, twin-less or no models are usage errors (exit 2)."""
    torch = pytest.importorskip("torch")
    import json

    import jax
    import numpy as np

    from jaxdl import models
    from jaxdl.models.resnet_cifar import cifar_resnet_params

    module = load_script(ROOT / "experiments" / "torch_side_by_side.py")
    assert module.cifar_depth("resnet20") == 20 and module.cifar_depth("resnet18") is None
    for depth in (20, 56):
        net = module.torch_cifar_resnet(depth)
        shapes = sorted(tuple(p.shape) if p.ndim != 4 else (p.shape[2], p.shape[3], p.shape[1], p.shape[0])
                        for p in net.parameters())
        variables = jax.eval_shape(models.create(f"resnet{depth}").init, jax.random.PRNGKey(0),
                                   np.zeros((1, 32, 32, 3), np.float32))
        jax_shapes = sorted(tuple(leaf.shape) for leaf in jax.tree_util.tree_leaves(variables["params"]))
        # flax's Dense kernel is [in, out], torch's Linear weight [out, in]
        assert sorted((s[::-1] if len(s) == 2 else s) for s in shapes) == jax_shapes
        assert sum(p.numel() for p in net.parameters()) == cifar_resnet_params((depth - 2) // 6)
        net.eval()
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    for bad in ("nope", "lenet5", " , "):
        with pytest.raises(SystemExit) as err:
            module.main(["--smoke", "--models", bad])
        assert err.value.code == 2
    out = tmp_path / "sbs.json"
    assert module.main(["--smoke", "--models", "resnet20", "--isolation", "in-process", "--variants", "jaxdl,torch",
                        "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [(r["model"], r["variant"]) for r in report["results"]] == [("resnet20", "jaxdl"), ("resnet20", "torch eager")]
    assert all(r["images_per_second"] > 0 for r in report["results"])
