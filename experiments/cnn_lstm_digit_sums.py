"""CNN-LSTM over image sequences: read 3 handwritten digits one after the other and output their sum.

Command:  python experiments/cnn_lstm_digit_sums.py [--out runs/cnn-lstm-digit-sums] [--smoke]
Data:     the embedded 8x8 digits (jaxdl.data.load("digits"), no files needed), resized to 32x32 for
          LeNet-5. Training sequences are drawn from the train split afresh each epoch
          (numpy generator seeded by (seed, epoch)); the 2,000 test sequences only from the test split.
Task:     label = d1 + d2 + d3 (28 classes). Predicting the most frequent sum (13 or 14) scores 7.5%;
          recognising each digit with accuracy a and adding gives about a**3.
Result:   test accuracy of the sum, OUT/summary.json; numbers in docs/rnn.md.
"""


import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data, optim
from jaxdl.models.cnn_rnn import CNNRNN
from jaxdl.train.experiment import run_script
from jaxdl.train.io import write_json_atomic
from jaxdl.train.losses import get_loss
from jaxdl.train.metrics import finalize
from jaxdl.train.state import create_train_state
from jaxdl.train.steps import eval_step, train_step


@dataclasses.dataclass(frozen=True)
class DigitSumConfig:
    encoder: str = "lenet5"
    encoder_options: tuple[tuple[str, object], ...] = ()
    sequence_length: int = 3
    hidden_size: int = 64
    train_sequences: int = 8000  # per epoch
    test_sequences: int = 2000
    batch_size: int = 64
    epochs: int = 6
    learning_rate: float = 2e-3
    clip_norm: float = 1.0
    seed: int = 0


def get_config() -> DigitSumConfig:
    """LeNet-5 per frame + LSTM 64 over 3 frames; Adam 2e-3 cosine, clip 1.0, 6 epochs of 8,000 sequences."""
    return DigitSumConfig()


def smoke(config: DigitSumConfig) -> DigitSumConfig:
    return dataclasses.replace(config, encoder="mlp", encoder_options=(("hidden_sizes", (16,)),), hidden_size=8, train_sequences=64, test_sequences=32, batch_size=16, epochs=1)


def sequences(images: np.ndarray, labels: np.ndarray, count: int, length: int, rng: np.random.Generator):
    idx = rng.integers(0, len(labels), (count, length))
    return images[idx], labels[idx].sum(-1).astype(np.int32)


def run(config: DigitSumConfig, out: Path, log=print) -> dict:
    train, test = data.load("digits", "train"), data.load("digits", "test")
    mean, std = (float(v[0]) for v in data.channel_stats(train))
    resize = jax.jit(lambda x: (data.to_model_input(x, (32, 32), mode="resize") - mean) / std)
    train_x, test_x = np.asarray(resize(train.images)), np.asarray(resize(test.images))
    num_classes = 9 * config.sequence_length + 1
    model = CNNRNN(num_classes, config.encoder, tuple(config.encoder_options), hidden_size=config.hidden_size)
    steps = config.train_sequences // config.batch_size
    lr = optim.schedule("cosine", learning_rate=config.learning_rate, total_steps=steps * config.epochs)
    tx = optim.optimizer("adam", lr, clip_norm=config.clip_norm)
    state = create_train_state(model, tx, input_shape=(config.sequence_length, 32, 32, 1), seed=config.seed)
    loss_fn = get_loss("cross_entropy")
    # The trainer's own steps: a sequence of frames is just another model input.
    step = jax.jit(functools.partial(train_step, loss_fn=loss_fn), donate_argnums=0)
    evaluate = jax.jit(functools.partial(eval_step, loss_fn=loss_fn))
    test_frames, test_sums = sequences(test_x, test.labels, config.test_sequences, config.sequence_length,
                                       np.random.default_rng([config.seed, 999]))
    history, start = [], time.perf_counter()
    for epoch in range(config.epochs):
        frames, sums = sequences(train_x, train.labels, config.train_sequences, config.sequence_length,
                                 np.random.default_rng([config.seed, epoch]))
        totals, t0 = None, time.perf_counter()
        for b in range(steps):
            s = slice(b * config.batch_size, (b + 1) * config.batch_size)
            state, metrics = step(state, {"image": frames[s], "label": sums[s]})
            metrics = {k: metrics[k] for k in ("loss_sum", "correct", "correct5", "count")}
            totals = metrics if totals is None else jax.tree_util.tree_map(jnp.add, totals, metrics)
        row = {"epoch": epoch + 1, **finalize(jax.device_get(totals), "train_"), "seconds": time.perf_counter() - t0}
        sums_test = None
        for s in range(0, config.test_sequences, 500):
            part = evaluate(state, {"image": test_frames[s:s + 500], "label": test_sums[s:s + 500]})
            sums_test = part if sums_test is None else jax.tree_util.tree_map(jnp.add, sums_test, part)
        row.update(finalize(jax.device_get(sums_test), "test_"))
        history.append(row)
        log(f"epoch {epoch + 1}/{config.epochs} | train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%} | "
            f"test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.2%}")
    summary = {"config": dataclasses.asdict(config), "epochs": config.epochs,
               "test_accuracy": history[-1]["test_accuracy"], "history": history,
               "seconds": time.perf_counter() - start, "device": str(jax.devices()[0])}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "summary.json", summary)
    log(f"test accuracy of the sum {summary['test_accuracy']:.2%}; outputs in {out}")
    return summary


def main(argv=None):
    return run_script(get_config, run, "cnn-lstm-digit-sums", argv, smoke=smoke)

if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
