"""Transfer on Fashion-MNIST: pretrain LeNet-5 on classes 0-4, fine-tune on 50 images per class of 5-9.

Command:  python experiments/transfer_fashion_mnist.py [--out runs/transfer-fashion-mnist]
Needs:    Fashion-MNIST (apt-get install dataset-fashion-mnist, or --data-dir with the IDX files)
Result:   docs/transfer.md (test accuracy on the 5000 test images of classes 5-9: fine-tuned vs from scratch).

Four runs through the one trainer (``jaxdl.train.fit``), each a run folder under ``--out``:

* ``pretrain``  LeNet-5 on the 30,000 training images of classes 0-4 (T-shirt, trouser, pullover,
  dress, coat).
* ``scratch``   LeNet-5 from random weights on 250 images of classes 5-9 (sandal, shirt, sneaker,
  bag, ankle boot): 50 per class, the same subset for every downstream run.
* ``finetune``  the same, starting from ``pretrain``: head re-initialized, all layers trained, the
  pretrained ones at 0.1x the learning rate.
* ``frozen``    the same, with the pretrained feature extractor frozen (``freeze=("backbone",)``):
  only the new head learns ("CNN features off the shelf").
* ``finetune_full`` all layers at the base rate (no 0.1x); ``frozen_lr10x`` frozen, head at 10x the rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from jaxdl.errors import JaxdlError
from jaxdl.train import TrainConfig, fit
from jaxdl.train.io import read_jsonl, write_json_atomic

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
PER_CLASS = 50


def get_config() -> dict[str, TrainConfig]:
    """Pretrain on classes 0-4 (3 epochs), then three 15-epoch runs on 50 images/class of classes 5-9.

    Downstream runs share optimizer, schedule, epochs and seed; they differ only in ``init``,
    ``freeze`` and ``backbone_lr_multiplier``. ``init`` is filled in by ``main`` (the pretrain run folder).
    """
    pretrain = TrainConfig(model="lenet5", dataset="fashion_mnist", epochs=3, batch_size=128, optimizer="adam",
                           learning_rate=2e-3, schedule="cosine", augment=("flip",), classes=SOURCE_CLASSES,
                           seed=0)
    downstream = TrainConfig(model="lenet5", dataset="fashion_mnist", epochs=15, batch_size=25, optimizer="adam",
                             learning_rate=2e-3, schedule="cosine", augment=("flip",), classes=TARGET_CLASSES,
                             train_per_class=PER_CLASS, seed=0)
    return {
        "pretrain": pretrain,
        "scratch": downstream,
        "finetune": dataclasses.replace(downstream, init="<pretrain>", backbone_lr_multiplier=0.1),
        "frozen": dataclasses.replace(downstream, init="<pretrain>", freeze=("backbone",)),
        # Two variants added after the first measurement (docs/transfer.md): the whole network at
        # the base rate, and the frozen extractor with a 10x higher rate for its head.
        "finetune_full": dataclasses.replace(downstream, init="<pretrain>"),
        "frozen_lr10x": dataclasses.replace(downstream, init="<pretrain>", freeze=("backbone",), learning_rate=2e-2),
    }


def smoke(config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(config, epochs=1, steps_per_epoch=2, test_limit=64,
                               train_limit=None if config.train_per_class else 512)


def plot(out: Path, histories: dict[str, list[dict]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, history in histories.items():
        epochs = [r["epoch"] for r in history]
        axes[0].plot(epochs, [r["test_accuracy"] for r in history], marker=".", label=label)
        axes[1].plot(epochs, [r["train_loss"] for r in history], marker=".", label=label)
    axes[0].set(xlabel="epoch", ylabel="test accuracy (classes 5-9)", title="250 labelled images")
    axes[1].set(xlabel="epoch", ylabel="train loss", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = out / "transfer-curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/transfer-fashion-mnist")
    parser.add_argument("--smoke", action="store_true", help="shrink to a few seconds (used by the tests)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--skip-pretrain", action="store_true", help="reuse OUT/pretrain")
    args = parser.parse_args(argv)
    out = Path(args.out)
    configs = get_config()
    if args.data_dir:
        configs = {k: dataclasses.replace(c, data_dir=args.data_dir) for k, c in configs.items()}
    if args.smoke:  # the three code paths (plain, init + lr multiplier, init + freeze), each a few steps
        configs = {k: smoke(c) for k, c in configs.items() if k in ("pretrain", "finetune", "frozen")}
    progress = False if args.no_progress else None
    summaries = {}
    try:
        for name, config in configs.items():
            if config.init == "<pretrain>":
                config = dataclasses.replace(config, init=str(out / "pretrain"))
            if name == "pretrain" and args.skip_pretrain:
                summaries[name] = json.loads((out / "pretrain" / "summary.json").read_text())
                continue
            print(f"== {name}", flush=True)
            summaries[name] = fit(config, out / name, overwrite=args.overwrite or args.smoke, progress=progress)
    except JaxdlError as err:
        print(f"transfer_fashion_mnist: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    histories = {name: read_jsonl(out / name / "metrics.jsonl") for name in configs if name != "pretrain"}
    plot(out, histories)
    result = {name: {"test_accuracy": s["test_accuracy"], "best_test_accuracy": s["best_test_accuracy"],
                     "train_examples": s["train_examples"], "test_examples": s["test_examples"],
                     "train_seconds": s["train_seconds"], "device": s["device"]}
              for name, s in summaries.items()}
    write_json_atomic(out / "transfer.json", result)
    for name, r in result.items():
        print(f"{name:9s} test accuracy {r['test_accuracy']:.2%} (best {r['best_test_accuracy']:.2%}) "
              f"on {r['test_examples']} images; {r['train_examples']} training images")
    summary = dict(summaries["finetune"])
    summary["transfer"] = result
    return summary


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
