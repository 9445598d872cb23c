"""Representative members of each CNN family trained on Fashion-MNIST (28x28 zero-padded to 32x32).

Command (CPU, bounded):
    python experiments/zoo_fashion_mnist.py --epochs 3 --train-limit 10000
Command (GPU, the full table):
    python experiments/zoo_fashion_mnist.py --epochs 30 --all
Writes runs/zoo/<model>/ for each model, docs/zoo_fashion_mnist.md (the table) and
docs/zoo_fashion_mnist.json. Anchors from the Fashion-MNIST benchmark: ResNet-18 94.9%,
MobileNet 95.0%, VGG16 93.5%, WRN-28-10 95.9% (long GPU runs with augmentation).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import jax

from jaxdl.train import TrainConfig, fit
from jaxdl.train.io import write_json_atomic, write_text_atomic

# ImageNet-style architectures run at 32x32 here (their stems downsample by 32, so the last stage
# sees 1x1); their classifier width is reduced where the 4096-wide FC layers would dominate CPU time.
CPU_SET = {
    "resnet20": {},
    # CIFAR-style VGG head: at 32x32 the five pools leave 1x1x512, so fc6 reads those 512 values
    # (pooled_size=1) instead of a 7x7 replication of them; lr 0.02 (0.05 stalled at 19% in 3 epochs).
    "vgg11_bn": {"input_size": 32, "learning_rate": 0.02,
                 "model_options": {"pooled_size": 1, "classifier_width": 512}},
    "mobilenet_v2": {"input_size": 32},
    "densenet_bc_100_k12": {},
}
GPU_EXTRA = {
    "resnet18": {"input_size": 32},
    "vgg16_bn": {"input_size": 32},
    "mobilenet_v1": {"input_size": 32},
    "wrn28_10": {},
    "resnext29_8x64d": {},
    "preact_resnet164": {},
    "fractalnet": {},
}


def get_config(model: str, epochs: int, train_limit: int | None, **extra) -> TrainConfig:
    """SGD with Nesterov momentum 0.9, cosine decay, weight decay 5e-4, flips + crops (the CIFAR recipe)."""
    fields = dict(model=model, dataset="fashion_mnist", epochs=epochs, batch_size=128, optimizer="nesterov",
                  learning_rate=0.05, schedule="cosine", augment=("crop", "flip"), train_limit=train_limit,
                  optimizer_options={"momentum": 0.9, "weight_decay": 5e-4}, seed=0)
    return TrainConfig(**{**fields, **extra})  # a family's entry may override the recipe (e.g. its lr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=10000, help="0 = all 60,000 training images")
    parser.add_argument("--models", default=None, help="comma-separated subset")
    parser.add_argument("--all", action="store_true", help="also the large models (GPU)")
    parser.add_argument("--out", default="runs/zoo")
    parser.add_argument("--table", default="docs/zoo_fashion_mnist.md")
    parser.add_argument("--smoke", action="store_true", help="one tiny epoch per model (tests)")
    args = parser.parse_args(argv)
    entries = {**CPU_SET, **(GPU_EXTRA if args.all else {})}
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in {**CPU_SET, **GPU_EXTRA}]
        if unknown:
            print(f"zoo_fashion_mnist: error: unknown model(s) {unknown}; choose from "
                  f"{', '.join({**CPU_SET, **GPU_EXTRA})}", file=sys.stderr)
            return 2
        entries = {m: {**CPU_SET, **GPU_EXTRA}[m] for m in wanted}
    table_json = Path(args.table).with_suffix(".json")
    # Rows of earlier invocations are kept (one table can be built by several bounded runs).
    rows = json.loads(table_json.read_text()) if table_json.is_file() and not args.smoke else []
    command = " ".join(["python experiments/zoo_fashion_mnist.py", *(argv if argv is not None else sys.argv[1:])])
    for model, extra in entries.items():
        config = get_config(model, args.epochs, args.train_limit or None, **extra)
        if args.smoke:
            config = dataclasses.replace(config, epochs=1, steps_per_epoch=2, train_limit=512, test_limit=256,
                                         eval_batch_size=256)
        summary = fit(config, Path(args.out) / model, overwrite=True, progress=False)
        rows = [r for r in rows if r["model"] != model]
        rows.append({"command": command, "model": model, "num_params": summary["num_params"], "epochs": summary["epochs"],
                     "train_examples": summary["train_examples"], "input": "x".join(map(str, summary["input_shape"])),
                     "test_accuracy": summary["test_accuracy"], "best_test_accuracy": summary["best_test_accuracy"],
                     "train_seconds": summary["train_seconds"], "images_per_second": summary["images_per_second"],
                     "device": summary["device"], "options": extra})
    if not args.smoke:
        write_json_atomic(table_json, rows)
        lines = ["# CNN families on Fashion-MNIST", "",
                 "Representative members of each family, trained by `experiments/zoo_fashion_mnist.py` "
                 f"(SGD + Nesterov 0.9, cosine, weight decay 5e-4, crop + flip; jax {jax.__version__}). "
                 "Fashion-MNIST's 28x28 images are zero-padded to 32x32; on CPU the runs are bounded "
                 "(a fixed random subset of the training set, a few epochs) and the full 10,000-image test "
                 "set is used. Each row gives the command that produced it.", "",
                 "| model | params | input | train images | epochs | test acc. | best | train time (s) | img/s | device | command |",
                 "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in rows:
            lines.append(f"| {r['model']} | {r['num_params']:,} | {r['input']} | {r['train_examples']:,} | {r['epochs']} | "
                         f"{r['test_accuracy']:.2%} | {r['best_test_accuracy']:.2%} | {r['train_seconds']:.0f} | "
                         f"{r['images_per_second']:.0f} | {r['device']} | `{r.get('command', '')}` |")
        write_text_atomic(args.table, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    sys.exit(main())
