"""One process of a multi-host data-parallel run on CPU (tests/train/test_multihost.py starts two).

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/train/multihost_check.py \\
        --coordinator 127.0.0.1:PORT --num-processes 2 --process-id I --mode jit --out OUT.npz

Each process reads only its share of every global batch (``batches(..., shard=(i, n))``), the
parallel step runs over the 4 global devices, and the process writes its copy of the final
parameters. ``--num-processes 1`` without a coordinator gives the single-process reference.
"""

from __future__ import annotations

import argparse
import functools

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--mode", default="jit")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from jaxdl.train.parallel import initialize_distributed, make_data_parallel

    joined = initialize_distributed(args.coordinator, args.num_processes if args.coordinator else None,
                                    args.process_id if args.coordinator else None)
    import jax

    from jaxdl import models, optim
    from jaxdl.data import Dataset, batches
    from jaxdl.train.losses import get_loss
    from jaxdl.train.state import create_train_state
    from jaxdl.train.steps import train_step

    rng = np.random.default_rng(0)  # the same data set in every process
    data = Dataset(rng.integers(0, 256, size=(60, 6, 6, 1)).astype(np.uint8),
                   rng.integers(0, 10, size=60).astype(np.int32), tuple("0123456789"), "synthetic")
    dp = make_data_parallel(args.mode, None) if args.mode != "none" else make_data_parallel("none")
    model = models.create("mlp", num_classes=10, hidden_sizes=(16,), batch_norm=True, **dp.model_overrides)
    tx = optim.optimizer("sgd", 0.1, momentum=0.9)

    def prepare(key, images, train):
        return images.astype(jax.numpy.float32) / 255.0

    step = dp.compile_train_step(functools.partial(train_step, loss_fn=get_loss("cross_entropy"), prepare=prepare))
    state = dp.put_state(create_train_state(model, tx, input_shape=(6, 6, 1), seed=0))
    shard = (jax.process_index(), jax.process_count())
    losses = []
    for epoch in range(2):
        for batch in batches(data, 10, seed=1, epoch=epoch, shard=shard):  # 10 = 5 per process: uneven
            state, metrics = step(state, dp.put_batch(batch))
            losses.append(float(dp.host_metrics(metrics)["loss"]))
    host = dp.host_state(state)
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_leaves_with_path({"params": host.params, "bs": host.batch_stats})}
    np.savez(args.out, losses=np.array(losses), step=dp.step_of(state), devices=jax.device_count(),
             processes=jax.process_count(), **flat)
    if joined:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
