"""The ``jaxdl`` command line.

    jaxdl train --model lenet5 --dataset digits --epochs 30 --out runs/lenet5
    jaxdl train --resume runs/lenet5 [--epochs 40]
    jaxdl models [--family resnet]        registered models with parameter counts
    jaxdl summary MODEL                   per-layer table (shapes, params)
    jaxdl datasets                        known data sets
    jaxdl download DATASET [--dest DIR]   fetch a data set (needs internet)

Bad input (unknown names, bad values, missing or corrupt data) prints one line starting with
``jaxdl: error:`` and exits with code 2, without a traceback (``--debug`` shows it).
A training failure (a non-finite loss) exits with code 1; earlier checkpoints are kept.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

__all__ = ["main", "console_main", "build_parser"]

USAGE_ERROR, TRAINING_ERROR = 2, 1


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage dump) and exits with 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _nonneg_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _key_values(text: str) -> dict[str, Any]:
    """``a=1,b=relu,c=[1,2]`` -> dict (see :func:`jaxdl.train.io.parse_key_values`)."""
    from jaxdl.train.io import parse_key_values
    try:
        return parse_key_values(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="jaxdl", description="The classic deep-learning canon in JAX.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    sub.required = True

    t = sub.add_parser("train", help="train a model on a data set", description="Train a model.")
    t.add_argument("--model", default=None, help="registered model name (default lenet5; see `jaxdl models`)")
    t.add_argument("--dataset", default=None, help="digits, fashion_mnist, mnist, cifar10, cifar100, "
                   "folder:PATH, zip:PATH or csv:PATH (default digits)")
    t.add_argument("--data-dir", default=None, help="folder searched first for data set files")
    t.add_argument("--epochs", type=_positive_int, default=None)
    t.add_argument("--batch-size", type=_positive_int, default=None)
    t.add_argument("--optimizer", default=None, help="sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw")
    t.add_argument("--learning-rate", "--lr", type=_positive_float, default=None)
    t.add_argument("--momentum", type=_nonneg_float, default=None)
    t.add_argument("--weight-decay", type=_nonneg_float, default=None)
    t.add_argument("--clip-norm", type=_positive_float, default=None, help="clip gradients to this global norm")
    t.add_argument("--accumulate-steps", type=_positive_int, default=None, help="gradient accumulation")
    t.add_argument("--schedule", default=None, help="constant, step, multistep, exponential, inverse_time, cosine, "
                   "cyclical, plateau")
    t.add_argument("--schedule-options", type=_key_values, default=None, metavar="K=V,...",
                   help="e.g. every_epochs=10,factor=0.1 or warmup_epochs=2")
    t.add_argument("--loss", default=None, help="cross_entropy, bce, mse, hinge")
    t.add_argument("--label-smoothing", type=_nonneg_float, default=None)
    t.add_argument("--augment", default=None, help="comma-separated: crop, flip, erase")
    t.add_argument("--model-options", type=_key_values, default=None, metavar="K=V,...",
                   help="e.g. hidden_sizes=[256,128,64],activation=relu,dropout_rate=0.2")
    t.add_argument("--input-size", type=_positive_int, default=None,
                   help="square input size fed to the model (default: the model's registered size)")
    t.add_argument("--val-fraction", type=_nonneg_float, default=None)
    t.add_argument("--train-limit", type=_positive_int, default=None, help="use a fixed random subset")
    t.add_argument("--test-limit", type=_positive_int, default=None, help="evaluate on a fixed random subset")
    t.add_argument("--steps-per-epoch", type=_positive_int, default=None, help="cap steps per epoch")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--keep-checkpoints", type=_positive_int, default=None)
    # scale and speed (docs/performance.md)
    t.add_argument("--parallel", default=None, choices=("none", "jit", "pmap"),
                   help="data parallel over devices: jit (Mesh + NamedSharding) or pmap")
    t.add_argument("--devices", type=_positive_int, default=None, help="devices for --parallel (default all)")
    t.add_argument("--precision", default=None, choices=("float32", "bfloat16", "float16"),
                   help="compute dtype (params and optimizer state stay float32; float16 adds loss scaling)")
    t.add_argument("--remat", action="store_true", default=None, help="rematerialise activations (jax.checkpoint)")
    t.add_argument("--data-on-device", action="store_true", default=None,
                   help="keep the training set in device memory and gather batches there")
    t.add_argument("--target-accuracy", type=_positive_float, default=None, metavar="FRACTION",
                   help="time to accuracy: record when --target-metric first reaches this (e.g. 0.94) in summary.json")
    t.add_argument("--target-metric", default=None, choices=("test_accuracy", "val_accuracy"),
                   help="the accuracy --target-accuracy watches (default test_accuracy)")
    t.add_argument("--stop-at-target", action="store_true", default=None,
                   help="end the run after the epoch that reaches --target-accuracy")
    t.add_argument("--coordinator", default=None, help="multi-host: coordinator host:port (or JAXDL_COORDINATOR)")
    t.add_argument("--num-processes", type=_positive_int, default=None, help="multi-host: JAXDL_NUM_PROCESSES")
    t.add_argument("--process-id", type=int, default=None, help="multi-host: JAXDL_PROCESS_ID")
    t.add_argument("--out", default=None, help="run folder (default runs/MODEL-DATASET)")
    t.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--progress", action="store_true", help="progress bar even when not on a terminal")

    f = sub.add_parser("finetune", help="fine-tune from a run folder or torchvision weights",
                       description="Train like `jaxdl train`, starting from pretrained weights (jaxdl.transfer).")
    for action in t._actions:  # every `train` flag, then the fine-tuning ones
        if action.dest not in ("help", "resume"):
            f._add_action(action)
    f.add_argument("--init", required=True, metavar="RUN_DIR_OR_WEIGHTS",
                   help="a jaxdl run folder (its last checkpoint) or a torchvision .safetensors/.pth file")
    f.add_argument("--freeze", action="append", default=None, metavar="PATTERN",
                   help="freeze parameters whose path starts with this regex (repeatable; 'backbone' = all "
                        "but the head)")
    f.add_argument("--backbone-lr-multiplier", type=_positive_float, default=None,
                   help="scale the learning rate of the pretrained (non-head) parameters, e.g. 0.1")
    f.add_argument("--keep-head", action="store_true", help="keep the pretrained head instead of re-initializing it")
    f.add_argument("--frozen-bn", action="store_true", help="BatchNorm uses and keeps its running statistics")

    x = sub.add_parser("extract", help="feature taps of a trained run for its data set, to .npz")
    x.add_argument("run_dir", metavar="RUN_DIR")
    x.add_argument("--tap", action="append", default=None, help="feature tap (repeatable; default pre_logits; "
                   "'all' for every tap)")
    x.add_argument("--split", action="append", default=None, choices=("train", "test"),
                   help="data split(s) (default both)")
    x.add_argument("--out", default=None, help="output .npz (default RUN_DIR/features.npz)")
    x.add_argument("--batch-size", type=_positive_int, default=256)
    x.add_argument("--limit", type=_positive_int, default=None, help="first N images of each split")
    x.add_argument("--no-progress", action="store_true")

    v = sub.add_parser("visualize", help="filters, feature maps, top patches and saliency PNGs of a trained run")
    v.add_argument("run_dir", metavar="RUN_DIR")
    v.add_argument("--out", default=None, help="folder for the PNGs (default RUN_DIR/viz)")
    v.add_argument("--tap", action="append", default=None, help="feature tap (repeatable; default: first two maps)")
    v.add_argument("--image-index", type=int, default=0, help="test image for feature maps and saliency")
    v.add_argument("--patch-images", type=_positive_int, default=2000, help="test images searched for top patches")

    m = sub.add_parser("models", help="list registered models with parameter counts")
    m.add_argument("--family", default=None)
    m.add_argument("--no-count", action="store_true", help="skip computing parameter counts")

    b = sub.add_parser("bench", help="training / inference throughput, compile time, memory, FLOP/s (JSON)")
    b.add_argument("--models", default="resnet18", help="comma-separated registered names")
    b.add_argument("--batch-sizes", default="64")
    b.add_argument("--dtypes", default="float32", help="comma-separated: float32, bfloat16, float16")
    b.add_argument("--input-size", type=_positive_int, default=None, help="square input (default: the model's)")
    b.add_argument("--model-options", type=_key_values, default=None, metavar="K=V,...")
    b.add_argument("--steps", type=_positive_int, default=5, help="timed steps per repeat")
    b.add_argument("--repeats", type=_positive_int, default=3)
    b.add_argument("--remat", default="off", choices=("off", "on", "both"),
                   help="the model's rematerialisation switch (remat / DenseNet memory_efficient); both: a row each")
    b.add_argument("--compile-only", action="store_true",
                   help="compile the train step only: compile time, FLOPs, XLA memory plan (no timed steps)")
    b.add_argument("--out", default=None, help="write the report as JSON here")
    s = sub.add_parser("summary", help="per-layer table of a model")
    s.add_argument("model")
    s.add_argument("--num-classes", type=int, default=None)
    s.add_argument("--input-size", type=_positive_int, default=None, help="square input size (default: model's)")

    sub.add_parser("datasets", help="list data sets")

    g = sub.add_parser("segment-train", help="train a segmentation model on the generated shapes set",
                       description="Train FCN / SegNet / DeconvNet on the shapes set; prints mean IoU.")
    g.add_argument("--model", default="fcn8s", help="fcn32s, fcn16s, fcn8s, segnet, deconvnet")
    g.add_argument("--out", default="runs/segment")
    g.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="model field, e.g. width=0.125 (repeatable; values parsed as Python literals)")
    g.add_argument("--model-options", type=_key_values, default=None, metavar="K=V,...",
                   help="model fields as one list, as in `jaxdl train` (e.g. width=0.125,fc_width=128)")
    for flag, kind, default in (("--epochs", int, 10), ("--batch-size", int, 32), ("--num-train", int, 2000),
                                ("--num-test", int, 500), ("--image-size", int, 64), ("--learning-rate", float, 1e-3),
                                ("--seed", int, 0)):
        g.add_argument(flag, type=kind, default=default)
    g.add_argument("--smoke", action="store_true", help="a few seconds: tiny widths, 3 steps")

    d = sub.add_parser("download", help="download a data set (needs internet; checksums verified)")
    d.add_argument("dataset")
    d.add_argument("--dest", default=None, help="destination folder (default ~/.cache/jaxdl)")
    d.add_argument("--force", action="store_true")

    from jaxdl.detection.experiment import add_detect_train_arguments
    add_detect_train_arguments(sub.add_parser("detect-train", help="train a detector on the generated shapes set "
                                              "and print its mAP (see docs/detection.md)"))
    return parser


_TRAIN_FLAGS = {  # CLI flag attribute -> TrainConfig field
    "model": "model", "dataset": "dataset", "data_dir": "data_dir", "epochs": "epochs",
    "batch_size": "batch_size", "optimizer": "optimizer", "learning_rate": "learning_rate",
    "schedule": "schedule", "loss": "loss", "label_smoothing": "label_smoothing", "val_fraction": "val_fraction",
    "train_limit": "train_limit", "test_limit": "test_limit", "input_size": "input_size", "steps_per_epoch": "steps_per_epoch", "seed": "seed",
    "keep_checkpoints": "keep_checkpoints", "model_options": "model_options",
    "schedule_options": "schedule_options", "parallel": "parallel", "devices": "devices", "precision": "precision",
    "remat": "remat", "data_on_device": "data_on_device", "target_accuracy": "target_accuracy",
    "target_metric": "target_metric", "stop_at_target": "stop_at_target",
}


def _train_config(args: argparse.Namespace):
    from jaxdl.train import TrainConfig

    fields: dict[str, Any] = {}
    for flag, field in _TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            fields[field] = value
    optimizer_options = {k: getattr(args, k) for k in ("momentum", "weight_decay", "clip_norm", "accumulate_steps")
                         if getattr(args, k) is not None}
    if optimizer_options:
        fields["optimizer_options"] = optimizer_options
    if args.augment is not None:
        fields["augment"] = tuple(a.strip() for a in args.augment.split(",") if a.strip())
    return TrainConfig(**fields)


def _validate_names(config) -> None:
    """Check registry names before any data is loaded, so a typo fails in milliseconds."""
    from jaxdl import data, models, optim
    from jaxdl.errors import ConfigError
    from jaxdl.train import available_losses

    models.info(config.model)
    if config.optimizer not in optim.available_optimizers():
        raise ConfigError(f"unknown optimizer {config.optimizer!r}; choose one of: "
                          f"{', '.join(optim.available_optimizers())}")
    if config.schedule not in optim.available_schedules():
        raise ConfigError(f"unknown schedule {config.schedule!r}; choose one of: "
                          f"{', '.join(optim.available_schedules())}")
    if config.loss not in available_losses():
        raise ConfigError(f"unknown loss {config.loss!r}; choose one of: {', '.join(available_losses())}")
    if ":" not in config.dataset and config.dataset not in data.available():
        raise ConfigError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(data.available())}, "
                          f"or folder:PATH, zip:PATH, csv:PATH")
    if config.augment:
        data.make_augment(config.augment)


def _distributed(run):
    """A training command that joins a multi-host run first when --coordinator / JAXDL_COORDINATOR say so
    (``train`` and ``finetune`` take the same multi-host flags)."""
    def command(args: argparse.Namespace) -> int:
        from jaxdl.train.parallel import initialize_distributed

        joined = initialize_distributed(args.coordinator, args.num_processes, args.process_id)  # no-op without one
        try:
            return run(args)
        finally:
            if joined:  # all processes leave together (process 0 may still be writing plots)
                import jax

                jax.distributed.shutdown()
    return command


def _train_or_resume(args: argparse.Namespace) -> int:
    from jaxdl.train import fit

    progress = True if args.progress else (False if args.no_progress else None)
    if args.resume:
        given = [f for f in _TRAIN_FLAGS if f != "epochs" and getattr(args, f) is not None]
        if given or args.out:
            raise _usage(f"--resume continues a run with its saved config; only --epochs may be given with it "
                         f"(got --{given[0].replace('_', '-') if given else 'out'})")
        from jaxdl.train import TrainConfig
        import json as _json

        config_path = os.path.join(args.resume, "config.json")
        epochs = args.epochs
        if epochs is None and os.path.isfile(config_path):
            epochs = _json.load(open(config_path)).get("epochs")
        config = TrainConfig(epochs=epochs or 1)
        fit(config, args.resume, resume=True, progress=progress)
        return 0
    config = _train_config(args)
    _validate_names(config)
    out = args.out or os.path.join("runs", f"{config.model}-{config.dataset.replace(':', '_').replace('/', '_')}")
    fit(config, out, overwrite=args.overwrite, progress=progress)
    return 0


def _finetune(args: argparse.Namespace) -> int:
    import dataclasses

    from jaxdl.train import fit

    args.resume = None
    config = _train_config(args)
    fields = {"init": args.init, "reset_head": not args.keep_head, "freeze": tuple(args.freeze or ())}
    if args.backbone_lr_multiplier is not None:
        fields["backbone_lr_multiplier"] = args.backbone_lr_multiplier
    if args.frozen_bn:
        fields["model_options"] = {**config.model_options, "frozen_bn": True}
    config = dataclasses.replace(config, **fields)
    _validate_names(config)
    if not os.path.exists(config.init):
        raise _usage(f"--init {config.init} does not exist (give a jaxdl run folder or a .safetensors/.pth file)")
    out = args.out or os.path.join("runs", f"{config.model}-{config.dataset.replace(':', '_')}-finetune")
    progress = True if args.progress else (False if args.no_progress else None)
    fit(config, out, overwrite=args.overwrite, progress=progress)
    return 0


_cmd_train = _distributed(_train_or_resume)
_cmd_finetune = _distributed(_finetune)


def _cmd_extract(args: argparse.Namespace) -> int:
    from jaxdl.transfer import extract_run_features

    out = args.out or os.path.join(args.run_dir, "features.npz")
    path = extract_run_features(args.run_dir, out, taps=tuple(args.tap or ("pre_logits",)),
                                splits=tuple(args.split or ("train", "test")), batch_size=args.batch_size,
                                limit=args.limit, progress=not args.no_progress)
    print(f"features written to {path}")
    return 0


def _cmd_visualize(args: argparse.Namespace) -> int:
    from jaxdl.viz import visualize_run

    for path in visualize_run(args.run_dir, args.out, taps=args.tap, image_index=args.image_index,
                              patch_images=args.patch_images):
        print(path)
    return 0


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def _cmd_models(args: argparse.Namespace) -> int:
    from jaxdl import models

    names = models.available(args.family)
    if args.family and not names:
        from jaxdl.errors import ConfigError

        raise ConfigError(f"unknown family {args.family!r}; choose one of: {', '.join(models.families())}")
    print(f"{'name':28s} {'family':14s} {'input':>13s} {'classes':>7s} {'params':>14s}  paper")
    for name in names:
        entry = models.info(name)
        count = "-" if args.no_count else f"{models.count_params(name):,}"
        shape = "x".join(map(str, entry.input_shape))
        print(f"{name:28s} {entry.family:14s} {shape:>13s} {entry.num_classes:>7d} {count:>14s}  {entry.paper}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from jaxdl import models

    entry = models.info(args.model)
    shape = entry.input_shape if args.input_size is None else (args.input_size, args.input_size, entry.input_shape[2])
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    print(f"{args.model}: {entry.paper}")
    print(models.layer_table(args.model, input_shape=shape, **kwargs))
    total = models.count_params(args.model, **kwargs)
    print(f"total trainable parameters: {total:,}"
          + (f" (published: {entry.num_params:,}, {entry.params_reference})" if entry.num_params else ""))
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from jaxdl import data

    for name in data.available():
        print(f"{name:16s} {data.info(name).description if hasattr(data.info(name), 'description') else ''}")
    print("also: folder:PATH (one subfolder per class), zip:PATH, csv:PATH")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from jaxdl import data

    path = data.download(args.dataset, args.dest, force=args.force)
    print(f"{args.dataset} is in {path}")
    return 0


def _cmd_segment_train(args: argparse.Namespace) -> int:
    from jaxdl.segmentation.training import segment_train_command

    return segment_train_command(args)


def _cmd_detect_train(args: argparse.Namespace) -> int:
    from jaxdl.detection.experiment import cmd_detect_train

    return cmd_detect_train(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from jaxdl.train.benchmark import run_bench_command

    run_bench_command(args.models, args.batch_sizes, args.dtypes, args.input_size, args.steps, args.repeats,
                      args.out, args.model_options, remat=args.remat, compile_only=args.compile_only)
    return 0


COMMANDS = {"train": _cmd_train, "models": _cmd_models, "summary": _cmd_summary, "datasets": _cmd_datasets,
            "download": _cmd_download, "finetune": _cmd_finetune, "extract": _cmd_extract,
            "segment-train": _cmd_segment_train, "detect-train": _cmd_detect_train, "bench": _cmd_bench,
            "visualize": _cmd_visualize}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from jaxdl.errors import JaxdlError, TrainingError

    try:
        return COMMANDS[args.command](args)
    except TrainingError as err:
        if args.debug:
            raise
        print(f"jaxdl: error: {err}", file=sys.stderr)
        return TRAINING_ERROR
    except (JaxdlError, ValueError, FileNotFoundError, _UsageError) as err:
        if args.debug:
            raise
        # One line: multi-line messages (e.g. the folders searched for a data set) are joined.
        message = " ".join(part.strip() for part in str(err).splitlines() if part.strip()) or type(err).__name__
        print(f"jaxdl: error: {message}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("jaxdl: interrupted; checkpoints of finished epochs are kept (continue with --resume)",
              file=sys.stderr)
        return 130


def console_main() -> None:
    """The installed ``jaxdl`` command and ``python -m jaxdl``: first re-executes itself with a
    faster host allocator where that helps (jaxdl.runtime; ``JAXDL_ALLOCATOR=system`` keeps
    glibc's), then runs :func:`main`. ``main`` itself never re-executes (it is called in-process
    by tests and scripts)."""
    from jaxdl.runtime import use_fast_allocator

    try:
        use_fast_allocator()
    except ValueError as err:
        print(f"jaxdl: error: {err}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    sys.exit(main())


if __name__ == "__main__":
    console_main()
