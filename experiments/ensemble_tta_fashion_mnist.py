"""An ensemble of K CNNs trained in one compiled step, and 10-crop test-time augmentation.

AlexNet (Krizhevsky, Sutskever & Hinton 2012) averaged the predictions of 5 (7) CNNs (sec. 6) and
of ten crops of each test image (sec. 4.1). Here K copies of LeNet-5, each from its own seed (its
own initialisation and augmentation draws), train on the same batches as *one* ``vmap``-ed train step
(``jaxdl.train.vectorized``), so the K members cost one compiled program and one pass over the data
(vmapped on GPU/TPU; unrolled side by side on CPU, where vmapped convs are slow grouped convs).

Command:  python experiments/ensemble_tta_fashion_mnist.py [--members 5] [--epochs 10] [--out runs/ensemble-tta]
Needs:    apt-get install dataset-fashion-mnist (or JAXDL_DATA with the IDX files)
Result:   OUT/summary.json and the printed table: each member's test accuracy (centre view), the
          ensemble's (mean of the members' softmax), each member's with 10-crop testing (the test
          image zero-padded by 2 pixels, its four 28x28 corner crops, the centre and their mirrors),
          the ensemble's with 10-crop testing; and the seconds per step of the vmapped ensemble step
          against one member's step (what K separate runs would cost). Measured figures:
          docs/performance.md ("vmap: ensembles, 10-crop testing").
"""


import dataclasses
import functools
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data as jdata
from jaxdl.errors import ConfigError
from jaxdl.train import TrainConfig, build_experiment
from jaxdl.train.experiment import Option, run_script
from jaxdl.train.io import write_json_atomic
from jaxdl.train.steps import predict_step, train_step
from jaxdl.train.vectorized import (create_ensemble_state, ensemble_strategy, ensemble_train_step, map_members,
                                    member, tta_probabilities)


@dataclasses.dataclass(frozen=True)
class EnsembleConfig:
    model: str = "lenet5"
    dataset: str = "fashion_mnist"
    members: int = 5                 # AlexNet sec. 6 averaged 5 CNNs (7 with pre-training)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    schedule: str = "cosine"
    augment: tuple[str, ...] = ("crop", "flip")
    tta_padding: int = 2             # 10-crop testing: pad by this much, crop back to the image size
    seed: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    eval_batch_size: int = 1000
    timing_steps: int = 20           # ensemble step vs one member's step, after training


def get_config() -> EnsembleConfig:
    """5 LeNet-5s on Fashion-MNIST, 10 epochs of Adam (cosine), crop + flip; ensemble and 10-crop test accuracy."""
    return EnsembleConfig()


def smoke(config: EnsembleConfig) -> EnsembleConfig:
    return dataclasses.replace(config, dataset="digits", members=2, epochs=1, train_limit=256, test_limit=128,
                               batch_size=32, eval_batch_size=64, timing_steps=2)


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=-1) == labels))


def run(config: EnsembleConfig, out: Path) -> dict:
    if config.members < 1:
        raise ConfigError(f"an ensemble needs at least 1 member, got --members {config.members}")
    if config.tta_padding < 1:
        raise ConfigError(f"--tta-padding must be at least 1 pixel (the corner crops shift by it), got {config.tta_padding}")
    exp = build_experiment(TrainConfig(
        model=config.model, dataset=config.dataset, epochs=config.epochs, batch_size=config.batch_size,
        optimizer=config.optimizer, learning_rate=config.learning_rate, schedule=config.schedule,
        augment=config.augment, train_limit=config.train_limit, test_limit=config.test_limit, seed=config.seed))
    seeds = [config.seed + k for k in range(config.members)]
    states = create_ensemble_state(exp.model, exp.tx, input_shape=exp.input_shape, seeds=seeds)
    step = jax.jit(functools.partial(ensemble_train_step, loss_fn=exp.loss_fn, prepare=exp.prepare),
                   donate_argnums=0)

    start = time.perf_counter()
    history = []
    for epoch in range(config.epochs):
        losses = []
        for i, batch in enumerate(jdata.batches(exp.train_set, config.batch_size, seed=config.seed, epoch=epoch)):
            if i >= exp.steps_per_epoch:
                break
            states, metrics = step(states, batch)
            losses.append(metrics["loss"])
        mean_loss = np.mean(np.stack(jax.device_get(losses)), axis=0)  # [K]
        history.append({"epoch": epoch + 1, "train_loss": [float(v) for v in mean_loss]})
        print(f"epoch {epoch + 1}/{config.epochs}: train loss per member "
              + " ".join(f"{v:.4f}" for v in mean_loss), flush=True)
    train_seconds = time.perf_counter() - start

    # Evaluation: every member on the centre view and on the ten crops, one compiled function.
    pad = config.tta_padding
    size = exp.test_set.image_shape[:2]

    @jax.jit
    def evaluate(states, images):
        centre = map_members(functools.partial(predict_step, prepare=exp.prepare), states, images, strategy=None)
        padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        crops = map_members(functools.partial(tta_probabilities, size=size, prepare=exp.prepare), states, padded,
                            strategy=None)
        return jax.nn.softmax(centre, axis=-1), crops

    centre_probs, crop_probs = [], []
    images, labels = exp.test_set.images, exp.test_set.labels
    for s in range(0, len(labels), config.eval_batch_size):
        c, t = evaluate(states, jnp.asarray(images[s:s + config.eval_batch_size]))
        centre_probs.append(np.asarray(c))
        crop_probs.append(np.asarray(t))
    centre = np.concatenate(centre_probs, axis=1)  # [K, N, classes]
    crops = np.concatenate(crop_probs, axis=1)

    # Cost: the vmapped K-member step against one member's own compiled step, same batch.
    batch = next(iter(jdata.batches(exp.train_set, config.batch_size, seed=config.seed, epoch=0)))
    one = jax.jit(functools.partial(train_step, loss_fn=exp.loss_fn, prepare=exp.prepare), donate_argnums=0)
    single = member(states, 0)

    def timed(fn, state):
        state, m = fn(state, batch)  # warm-up (compiled already for the ensemble; compiles the single step)
        jax.block_until_ready(m)
        t0 = time.perf_counter()
        for _ in range(config.timing_steps):
            state, m = fn(state, batch)
        jax.block_until_ready(m)
        return (time.perf_counter() - t0) / config.timing_steps

    ensemble_step_s = timed(step, states)
    single_step_s = timed(one, single)

    members = [_accuracy(centre[k], labels) for k in range(config.members)]
    members_tta = [_accuracy(crops[k], labels) for k in range(config.members)]
    summary = {
        "model": config.model, "dataset": config.dataset, "members": config.members, "epochs": config.epochs,
        "train_images": len(exp.train_set), "test_images": int(len(labels)),
        "member_test_accuracy": members, "mean_member_test_accuracy": statistics.mean(members),
        "ensemble_test_accuracy": _accuracy(centre.mean(axis=0), labels),
        "member_tta_test_accuracy": members_tta, "mean_member_tta_test_accuracy": statistics.mean(members_tta),
        "ensemble_tta_test_accuracy": _accuracy(crops.mean(axis=0), labels),
        "train_seconds": train_seconds, "ensemble_step_seconds": ensemble_step_s,
        "single_member_step_seconds": single_step_s,
        "ensemble_cost_vs_sequential": ensemble_step_s / (config.members * single_step_s),
        "history": history, "config": {k: (list(v) if isinstance(v, tuple) else v)
                                       for k, v in dataclasses.asdict(config).items()},
        "strategy": ensemble_strategy(), "device": f"{jax.devices()[0].platform} x{jax.device_count()}",
        "jax_version": jax.__version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "summary.json", summary)
    print(f"members (centre view): {' '.join(f'{a:.2%}' for a in members)}; mean {summary['mean_member_test_accuracy']:.2%}")
    print(f"members (10-crop):     {' '.join(f'{a:.2%}' for a in members_tta)}; "
          f"mean {summary['mean_member_tta_test_accuracy']:.2%}")
    print(f"ensemble of {config.members}: {summary['ensemble_test_accuracy']:.2%} (centre), "
          f"{summary['ensemble_tta_test_accuracy']:.2%} (10-crop)")
    print(f"one ensemble step {ensemble_step_s * 1e3:.1f} ms vs one member's step {single_step_s * 1e3:.1f} ms "
          f"(x{config.members} = {config.members * single_step_s * 1e3:.1f} ms sequentially); wrote {out / 'summary.json'}")
    return summary


def check_smoke(summary: dict) -> None:
    """What a smoke run must show (tests/test_experiments.py)."""
    assert summary["members"] == 2 and len(summary["member_test_accuracy"]) == 2
    for key in ("ensemble_test_accuracy", "ensemble_tta_test_accuracy", "mean_member_tta_test_accuracy"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["ensemble_step_seconds"] > 0 and summary["single_member_step_seconds"] > 0
    # the members start from different seeds, so they are different networks
    assert summary["history"][0]["train_loss"][0] != summary["history"][0]["train_loss"][1]


def main(argv=None):
    return run_script(get_config, run, "ensemble-tta", argv, smoke=smoke, options=[
        Option("--members", int, "ensemble size K"), Option("--epochs", int), Option("--dataset"),
        Option("--train-limit", int), Option("--test-limit", int), Option("--tta-padding", int)])


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
