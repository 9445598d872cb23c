"""LSTM training throughput (sequences per second) in jaxdl, and the same model in torch when installed.

Command:  python experiments/lstm_throughput.py [--out runs/lstm-throughput] [--steps 30] [--smoke]
Config:   one LSTM layer, 64 input features, hidden 256, 50 steps, batch 64, final hidden -> 10 classes,
          cross-entropy, Adam; random inputs (throughput does not depend on the values).
Result:   prints sequences/s of both frameworks (torch with all cores and with 1 thread) (median of 3 timed blocks of --steps train steps, after
          warm-up/compilation) and writes OUT/results.json; numbers in docs/rnn.md.
"""


import dataclasses
import functools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import optim
from jaxdl.models.rnn import SequenceClassifier
from jaxdl.train.experiment import Option, run_script
from jaxdl.train.io import write_json_atomic
from jaxdl.train.losses import get_loss
from jaxdl.train.state import create_train_state
from jaxdl.train.steps import train_step


@dataclasses.dataclass(frozen=True)
class ThroughputConfig:
    features: int = 64
    hidden_size: int = 256
    seq_len: int = 50
    batch_size: int = 64
    num_classes: int = 10
    steps: int = 30  # per timed block
    blocks: int = 3
    learning_rate: float = 1e-3
    torch_threads: tuple[int, ...] = ()  # () = all cores and 1 thread


def get_config() -> ThroughputConfig:
    """LSTM 64 -> 256, 50 steps, batch 64, Adam: median sequences/s over 3 blocks of 30 train steps."""
    return ThroughputConfig()


def smoke(config: ThroughputConfig) -> ThroughputConfig:
    return dataclasses.replace(config, features=4, hidden_size=8, seq_len=5, batch_size=4, steps=2, blocks=1,
                               torch_threads=(1,))


def _data(config: ThroughputConfig):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(config.batch_size, config.seq_len, config.features)).astype(np.float32)
    y = rng.integers(0, config.num_classes, config.batch_size).astype(np.int32)
    return x, y


def jax_throughput(config: ThroughputConfig) -> dict:
    model = SequenceClassifier(num_classes=config.num_classes, cell="lstm", hidden_size=config.hidden_size)
    tx = optim.optimizer("adam", config.learning_rate)
    state = create_train_state(model, tx, input_shape=(config.seq_len, config.features))
    step = jax.jit(functools.partial(train_step, loss_fn=get_loss("cross_entropy")), donate_argnums=0)
    x, y = _data(config)
    batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics["loss"])
    compile_s = time.perf_counter() - t0
    rates = []
    for _ in range(config.blocks):
        t0 = time.perf_counter()
        for _ in range(config.steps):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics["loss"])
        rates.append(config.steps * config.batch_size / (time.perf_counter() - t0))
    return {"framework": f"jax {jax.__version__} ({jax.devices()[0].platform})", "sequences_per_s":
            statistics.median(rates), "block_rates": rates, "first_step_s": compile_s}


def torch_throughput(config: ThroughputConfig, threads: int) -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(threads)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(config.features, config.hidden_size, batch_first=True)
            self.head = torch.nn.Linear(config.hidden_size, config.num_classes)

        def forward(self, x):
            _, (h, _) = self.rnn(x)
            return self.head(h[-1])

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    x, y = _data(config)
    x, y = torch.from_numpy(x), torch.from_numpy(y).long()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    rates = []
    for _ in range(config.blocks):
        t0 = time.perf_counter()
        for _ in range(config.steps):
            step()
        rates.append(config.steps * config.batch_size / (time.perf_counter() - t0))
    return {"framework": f"torch {torch.__version__} (cpu, {torch.get_num_threads()} threads)",
            "sequences_per_s": statistics.median(rates), "block_rates": rates, "first_step_s": first}


def run(config: ThroughputConfig, out: Path, log=print) -> dict:
    rows = [jax_throughput(config)]
    # torch with all cores (its default) and with one thread: on a busy shared machine its worker
    # threads compete with other jobs, and one thread can be the faster of the two.
    torch_row = None
    for threads in config.torch_threads or sorted({os.cpu_count() or 1, 1}, reverse=True):
        torch_row = torch_throughput(config, threads)
        if torch_row is None:
            break
        rows.append(torch_row)
    for r in rows:
        log(f"{r['framework']:45s} {r['sequences_per_s']:10.1f} sequences/s   (first step {r['first_step_s']:.2f} s)")
    if torch_row is None:
        log("torch is not installed: only the jax figure (pip install torch to compare)")
    summary = {"config": dataclasses.asdict(config), "results": rows, "machine": f"{platform.machine()}, "
               f"{os.cpu_count()} cores", "note": "shared machine: other jobs may have run at the same time"}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", summary)
    log(f"results in {out / 'results.json'}")
    return summary


def check_smoke(summary: dict) -> None:
    assert all(r["sequences_per_s"] > 0 for r in summary["results"])
    json.dumps(summary)


def main(argv=None):
    return run_script(get_config, run, "lstm-throughput", argv, smoke=smoke,
                      options=[Option("--steps", int, "timed steps per framework")])

if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
