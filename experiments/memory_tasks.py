"""Long-range memory benchmark: the adding problem and the copy task, vanilla RNN vs LSTM vs GRU.

Command:  python experiments/memory_tasks.py [--out runs/memory-tasks] [--smoke]
Result:   prints one table (task, cell, final test metric, chance level) and writes OUT/results.json;
          measured numbers in docs/rnn.md. LSTM and GRU must beat the vanilla (tanh Elman) RNN.

Tasks (fresh random batches every step, drawn from numpy's generator seeded by (seed, step)):

* Adding problem (Hochreiter & Schmidhuber 1997, sec. 5 experiment 4; the form of Le, Jaitly &
  Hinton 2015 sec. 4.1): ``T`` steps of ``(value ~ U[0, 1], marker)``, exactly two markers = 1 (one
  in each half); the target is the sum of the two marked values. Predicting the constant 1
  gives MSE = Var(u1 + u2) = 2/12 = 0.167, the chance level.
* Copy task (Hochreiter & Schmidhuber 1997 sec. 5 exp. 2 style; the form of Arjovsky, Shah & Bengio
  2016 sec. 4.1): ``S`` symbols from an alphabet of 8, then ``delay`` blank steps whose last is a
  delimiter, then ``S`` blanks during which the model must output the ``S`` symbols. Metric:
  accuracy on the ``S`` recall steps; chance is 1/8.
"""


import dataclasses
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl import optim
from jaxdl.models.rnn import SequenceClassifier, SequenceTagger
from jaxdl.train.experiment import Option, run_script
from jaxdl.train.io import write_json_atomic
from jaxdl.train.state import create_train_state

ALPHABET = 8  # copy-task symbols 1..8; 0 = blank, 9 = delimiter


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
    cells: tuple[str, ...] = ("rnn", "lstm", "gru")
    hidden_size: int = 64
    batch_size: int = 64
    steps: int = 2000
    learning_rate: float = 2e-3
    clip_norm: float = 1.0
    adding_length: int = 100
    copy_symbols: int = 5
    copy_delay: int = 20
    test_batches: int = 8
    seed: int = 0


def get_config() -> MemoryConfig:
    """Adding problem T=100 and copy task (5 symbols, delay 20); hidden 64, Adam 2e-3, clip 1.0, 2000 steps each."""
    return MemoryConfig()


def smoke(config: MemoryConfig) -> MemoryConfig:
    return dataclasses.replace(config, cells=("lstm",), hidden_size=8, batch_size=8, steps=3, adding_length=10,
                               copy_symbols=2, copy_delay=3, test_batches=1)


def adding_batch(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``x: <f32>[n, length, 2]`` (value, marker), ``y: <f32>[n]`` the sum of the two marked values."""
    values = rng.uniform(0, 1, (n, length)).astype(np.float32)
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    markers = np.zeros((n, length), np.float32)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    target = values[np.arange(n), first] + values[np.arange(n), second]
    return np.stack([values, markers], -1), target


def copy_batch(rng: np.random.Generator, n: int, symbols: int, delay: int) -> tuple[np.ndarray, np.ndarray]:
    """``x: <f32>[n, T, 10]`` one-hot (0 blank, 1..8 symbols, 9 delimiter), ``y: <i32>[n, T]``, T = 2S + delay."""
    seq = rng.integers(1, ALPHABET + 1, (n, symbols))
    length = 2 * symbols + delay
    inputs = np.zeros((n, length), np.int64)
    inputs[:, :symbols] = seq
    inputs[:, symbols + delay - 1] = ALPHABET + 1
    targets = np.zeros((n, length), np.int32)
    targets[:, symbols + delay:] = seq
    return np.eye(ALPHABET + 2, dtype=np.float32)[inputs], targets


def _losses(task: str, config: MemoryConfig):
    recall = slice(config.copy_symbols + config.copy_delay, None)

    def loss_and_metric(logits, y):
        if task == "adding":
            err = (logits[:, 0] - y) ** 2
            return jnp.mean(err), jnp.mean(err)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        acc = jnp.mean(jnp.argmax(logits[:, recall], -1) == y[:, recall])
        return jnp.mean(ce), acc

    return loss_and_metric


def train_one(task: str, cell: str, config: MemoryConfig) -> dict:
    if task == "adding":
        model = SequenceClassifier(num_classes=1, cell=cell, hidden_size=config.hidden_size)
        batch = functools.partial(adding_batch, n=config.batch_size, length=config.adding_length)
        shape = (config.adding_length, 2)
    else:
        model = SequenceTagger(num_classes=ALPHABET + 1, cell=cell, hidden_size=config.hidden_size)
        batch = functools.partial(copy_batch, n=config.batch_size, symbols=config.copy_symbols,
                                  delay=config.copy_delay)
        shape = (2 * config.copy_symbols + config.copy_delay, ALPHABET + 2)
    tx = optim.optimizer("adam", config.learning_rate, clip_norm=config.clip_norm)
    state = create_train_state(model, tx, input_shape=shape, seed=config.seed)
    loss_and_metric = _losses(task, config)

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, x, y):
        def loss_fn(params):
            return loss_and_metric(state.apply_fn({"params": params}, x), y)[0]

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads, state.batch_stats), loss

    @jax.jit
    def metric(params, x, y):
        return loss_and_metric(model.apply({"params": params}, x), y)[1]

    start = time.perf_counter()
    curve = []
    for s in range(config.steps):
        x, y = batch(np.random.default_rng([config.seed, s]))
        state, loss = step(state, x, y)
        if s % max(1, config.steps // 20) == 0 or s == config.steps - 1:
            curve.append((s, float(loss)))
    test_rng = np.random.default_rng([config.seed, 10 ** 9])  # held-out batches, never trained on
    values = [float(metric(state.params, *batch(test_rng))) for _ in range(config.test_batches)]
    return {"task": task, "cell": cell, "metric": "mse" if task == "adding" else "recall_accuracy",
            "value": float(np.mean(values)), "chance": 2 / 12 if task == "adding" else 1 / ALPHABET,
            "train_curve": curve, "seconds": time.perf_counter() - start}


def run(config: MemoryConfig, out: Path, log=print) -> dict:
    rows = []
    for task in ("adding", "copy"):
        for cell in config.cells:
            row = train_one(task, cell, config)
            rows.append(row)
            log(f"{task:7s} {cell:5s} {row['metric']:16s} {row['value']:.4f}   (chance {row['chance']:.4f}, "
                f"{row['seconds']:.0f} s)")
    summary = {"config": dataclasses.asdict(config), "results": rows, "device": str(jax.devices()[0])}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", summary)
    log(f"results in {out / 'results.json'}")
    return summary


def check_smoke(summary: dict) -> None:
    cells = summary["config"]["cells"]
    assert [(r["task"], r["cell"]) for r in summary["results"]] == [(t, c) for t in ("adding", "copy") for c in cells]
    assert all(np.isfinite(r["value"]) for r in summary["results"])
    json.dumps(summary)


def main(argv=None):
    return run_script(get_config, run, "memory-tasks", argv, smoke=smoke,
                      options=[Option("--steps", int, "training steps per task and cell")])

if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
