"""Run under 8 fake CPU devices (tests/train/test_parallel.py starts it in a subprocess):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/train/parallel_check.py

One SGD step on a global batch, three ways: plain jit on one device, jit over a Mesh with the
batch sharded, pmap with BatchNorm's axis_name. Prints one JSON line of max abs differences
(params, batch_stats, metrics) per model and batch size; the test asserts on them.
"""

from __future__ import annotations

import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import models, optim
from jaxdl.train.losses import get_loss
from jaxdl.train.parallel import make_data_parallel
from jaxdl.train.state import create_train_state
from jaxdl.train.steps import train_step


def max_diff(a, b) -> float:
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))), a, b))
    return max(leaves) if leaves else 0.0


def run(name: str, overrides: dict, input_shape: tuple[int, ...], batch_size: int, steps: int = 2,
        augment: bool = False) -> dict:
    """``augment``: uint8 images through the trainer's preprocessing with random crops and flips."""
    rng = np.random.default_rng(0)
    tx = optim.optimizer("sgd", 0.1, momentum=0.9)
    prepare = None
    if augment:
        from jaxdl.data import make_augment
        from jaxdl.train.loop import prepare_images

        prepare = functools.partial(prepare_images, target_hw=None, resize="none", mean=(0.5,) * input_shape[-1],
                                    std=(0.25,) * input_shape[-1], augment=make_augment(["crop", "flip"], padding=2))
    step = functools.partial(train_step, loss_fn=get_loss("cross_entropy"), prepare=prepare)
    batches = [{"image": (rng.integers(0, 256, size=(batch_size, *input_shape)).astype(np.uint8) if augment
                          else rng.normal(size=(batch_size, *input_shape)).astype(np.float32) * 2 + 0.5),
                "label": rng.integers(0, 10, size=batch_size).astype(np.int32)} for _ in range(steps)]
    results = {}
    for mode in ("none", "jit", "pmap"):
        dp = make_data_parallel(mode, 1 if mode == "none" else 8)
        model = models.create(name, num_classes=10, **overrides, **dp.model_overrides)
        state = dp.put_state(create_train_state(model, tx, input_shape=input_shape, seed=0))
        compiled = dp.compile_train_step(step)
        sums = []
        for batch in batches:
            state, metrics = compiled(state, dp.put_batch(batch))
            sums.append(dp.host_metrics(metrics))
        host = dp.host_state(state)
        results[mode] = {"params": host.params, "batch_stats": host.batch_stats, "metrics": sums,
                         "step": dp.step_of(state)}
    ref = results["none"]
    out = {"model": name, "batch_size": batch_size, "augment": augment, "steps": [results[m]["step"] for m in results]}
    for mode in ("jit", "pmap"):
        for part in ("params", "batch_stats", "metrics"):
            out[f"{mode}_{part}"] = max_diff(ref[part], results[mode][part])
    for part in ("params", "batch_stats", "metrics"):
        out[f"jit_vs_pmap_{part}"] = max_diff(results["jit"][part], results["pmap"][part])
    # The step must have moved the state (a no-op step would "agree" trivially).
    out["update_size"] = max_diff(ref["params"], jax.device_get(
        create_train_state(models.create(name, num_classes=10, **overrides), tx, input_shape=input_shape,
                           seed=0).params))
    out["count"] = [float(m["count"]) for m in ref["metrics"]]
    return out


def fit_runs(out_dir: str) -> dict:
    """The one trainer (``fit``) with parallel none / jit / pmap, and a pmap run resumed after epoch 1."""
    from pathlib import Path

    from jaxdl.train import TrainConfig, fit
    from jaxdl.train.io import read_jsonl

    out_dir = Path(out_dir)
    base = dict(model="mlp", dataset="digits", epochs=2, batch_size=36, train_limit=360, test_limit=200,
                steps_per_epoch=3, optimizer="momentum", learning_rate=0.05, eval_batch_size=200,
                model_options={"hidden_sizes": (16,), "batch_norm": True})
    rows = {}
    for mode in ("none", "jit"):
        fit(TrainConfig(**base, parallel=mode), out_dir / mode, progress=False, log=lambda s: None)
        rows[mode] = read_jsonl(out_dir / mode / "metrics.jsonl")
    # pmap: stop after epoch 1, resume from its checkpoint (gathered to host) for epoch 2
    fit(TrainConfig(**{**base, "epochs": 1}, parallel="pmap"), out_dir / "pmap", progress=False, log=lambda s: None)
    fit(TrainConfig(**base, parallel="pmap"), out_dir / "pmap", resume=True, progress=False, log=lambda s: None)
    rows["pmap_resumed"] = read_jsonl(out_dir / "pmap" / "metrics.jsonl")
    keep = ("epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
    return {mode: [{k: r[k] for k in keep} for r in rs] for mode, rs in rows.items()}


def main() -> None:
    if jax.device_count() != 8:
        sys.exit(f"needs 8 devices, found {jax.device_count()}: set XLA_FLAGS=--xla_force_host_platform_device_count=8")
    if len(sys.argv) > 1:  # an output folder: also run the trainer
        print(json.dumps({"fit": fit_runs(sys.argv[1])}), flush=True)
    cases = [
        ("mlp", {"hidden_sizes": (16,), "batch_norm": True}, (8, 8, 1), 20),   # uneven: 3,3,3,3,2,2,2,2
        ("resnet20", {"stage_sizes": (1, 1, 1), "width": 4}, (8, 8, 3), 12),  # conv + BN, uneven: 2,2,2,2,1,1,1,1
        # random crops + flips: one key per example from its place in the global batch, so an even
        # batch augments alike on one device, over a Mesh and under pmap ...
        ("resnet20", {"stage_sizes": (1, 1, 1), "width": 4}, (8, 8, 3), 16, 2, True),
        # ... and an uneven one alike under jit and pmap (both pad the same slots)
        ("mlp", {"hidden_sizes": (16,), "batch_norm": True}, (8, 8, 1), 20, 2, True),
    ]
    for case in cases:
        print(json.dumps(run(*case)), flush=True)


if __name__ == "__main__":
    main()
