"""Detection experiments on the generated shapes set: one config dict, one runner, one CLI.

``experiments/<detector>_shapes.py`` each define ``get_config()`` and call
:func:`run_detection_experiment`; ``jaxdl detect-train`` calls the same code with the options
given on its command line. The run prints per-epoch losses and the final metrics. With
``--out DIR`` it keeps a run folder: ``config.json`` (written first), ``metrics.jsonl`` (one row
per epoch), ``checkpoints/last/<step>/`` (orbax, after every epoch and at a time-limit stop),
then ``summary.json`` (config, metrics, wall time) and ``examples.png``. ``--resume`` continues
the run in DIR from its latest checkpoint (same command; only ``--epochs`` and ``--time-limit``
may change), ``--overwrite`` replaces it; without either an existing non-empty DIR is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
from pathlib import Path
from typing import Any, Callable, Sequence

from jaxdl.errors import ConfigError

__all__ = ["DetectionConfig", "run_detection", "run_detection_experiment", "add_detect_train_arguments",
           "cmd_detect_train", "smoke_config", "recipe", "RECIPES"]


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
    """A detection run on the shapes set (``jaxdl.data.shapes.make_shapes``)."""

    model: str = "yolo_v1"
    model_options: dict = dataclasses.field(default_factory=dict)
    image_size: int = 64
    train_images: int = 2000
    test_images: int = 300
    train_seed: int = 0
    test_seed: int = 1            # a different seed: test images are new draws
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    flip: bool = True
    max_scale: float = 1.0
    time_limit_s: float | None = 600.0
    max_steps: int | None = None
    seed: int = 0


def smoke_config(config: DetectionConfig) -> DetectionConfig:
    """A few seconds: 16 tiny images, 2 steps, a narrow backbone."""
    opts = dict(config.model_options)
    opts.setdefault("backbone", None)
    return dataclasses.replace(config, image_size=32, train_images=8, test_images=4, epochs=1, batch_size=4,
                               max_steps=2, time_limit_s=None, model_options={**opts, **_smoke_model(config.model)})


def _smoke_model(name: str) -> dict:
    from jaxdl.detection.backbones import SmallBackbone
    small = SmallBackbone(widths=(8, 8, 16, 16, 16))
    if name == "yolo_v1":
        return {"backbone": small, "grid": 4, "hidden": 32}
    if name == "ssd":
        return {"backbone": small, "extra_width": 16}
    opts = {"backbone": small, "anchor_sizes": (8.0, 16.0), "rpn_width": 16, "fc_width": 32, "pre_nms_top_n": 32,
            "post_nms_top_n": 16, "roi_batch": 16, "rpn_batch": 16, "mask_width": 8, "max_detections": 10}
    if name == "faster_rcnn_fpn":
        # anchors halved with the 32-pixel smoke images, the eq. 1 canonical size too
        opts.update({"fpn_width": 16, "fpn_anchor_sizes": (4.0, 8.0, 16.0, 32.0), "fpn_canonical": 16.0})
    return opts


def config_to_json(config: DetectionConfig) -> dict[str, Any]:
    """``config`` as JSON values; a model option that is not JSON (a backbone module) is kept as its repr."""
    def plain(v):
        try:
            json.dumps(v)
            return v
        except TypeError:
            return repr(v)
    d = dataclasses.asdict(config)
    d["model_options"] = {k: plain(v) for k, v in config.model_options.items()}
    return json.loads(json.dumps(d))    # tuples -> lists, as they read back


# What a resume may change: train for longer, or give the run more time.
_RESUMABLE_CHANGES = ("epochs", "time_limit_s")


def _prepare_run_dir(config: DetectionConfig, out: Path, resume: bool, overwrite: bool) -> None:
    """Check ``out`` before anything is trained or written: refuse to clobber a run, and on resume
    check the command against the run's ``config.json``."""
    from jaxdl.errors import ResumeError
    from jaxdl.train.io import check_new_run_dir
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the run or replace it")
    if resume:
        path = out / "config.json"
        if not path.is_file():
            raise ResumeError(f"cannot resume: {out} holds no config.json (not a detect-train run folder); "
                              f"start a new run with --out {out}")
        saved = json.loads(path.read_text())
        now = config_to_json(config)
        diff = [f"{k} ({saved.get(k)!r} in the run, {now[k]!r} now)" for k in now
                if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]]
        if diff:
            raise ConfigError(f"cannot resume {out}: the command differs from its config.json in " + "; ".join(diff)
                              + "; repeat the run's command (only --epochs and --time-limit may change)")
        return
    check_new_run_dir(out, overwrite)


def run_detection(config: DetectionConfig, out: str | None = None, log: Callable[[str], None] = print, *,
                  resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train and evaluate; returns (and, with ``out``, writes to ``out/summary.json``) the summary.

    ``out`` is a run folder (see the module docstring); ``resume`` / ``overwrite`` as there.
    """
    import jax

    from jaxdl.data.shapes import make_shapes
    from jaxdl.detection.detectors import create_detector
    from jaxdl.detection.train import train_detector
    from jaxdl.train.io import replace_run_dir, write_json_atomic, write_jsonl_atomic

    if out is None and resume:
        raise ConfigError("--resume needs --out: the run folder to continue")
    run_dir = None if out is None else Path(out)
    if run_dir is not None:
        _prepare_run_dir(config, run_dir, resume, overwrite)
    model = create_detector(config.model, num_classes=3, image_size=config.image_size, **config.model_options)
    with_masks = bool(getattr(model, "mask_head", False))
    train = make_shapes(config.train_images, image_size=config.image_size, seed=config.train_seed)
    test = make_shapes(config.test_images, image_size=config.image_size, seed=config.test_seed)
    log(f"{config.model}: {len(train)} train / {len(test)} test shapes images {config.image_size}x{config.image_size}")
    extra = {}
    if getattr(model, "proposal_source", "rpn") == "given":
        import time

        from jaxdl.detection.proposals import proposal_recall, proposals_for
        t0 = time.time()
        extra = {"train_proposals": proposals_for(train.images, model.post_nms_top_n),
                 "test_proposals": proposals_for(test.images, model.post_nms_top_n)}
        recall = {f"proposal_recall{int(t * 100)}": proposal_recall(extra["test_proposals"], test.boxes, test.classes, t)
                  for t in (0.5, 0.7)}
        log(f"selective-search proposals: {time.time() - t0:.0f}s, test recall " +
            " ".join(f"{k}={v:.3f}" for k, v in recall.items()))
    checkpoints, on_epoch = None, None
    if run_dir is not None:
        from jaxdl.train.checkpoint import RunCheckpoints
        if not resume:      # the data and the model were built: only now replace what --overwrite replaces
            replace_run_dir(run_dir)
        write_json_atomic(run_dir / "config.json", config_to_json(config))
        checkpoints = RunCheckpoints(run_dir)
        on_epoch = lambda history: write_jsonl_atomic(run_dir / "metrics.jsonl", history)
    try:
        state, summary = train_detector(
            model, train, test, epochs=config.epochs, batch_size=config.batch_size,
            learning_rate=config.learning_rate, weight_decay=config.weight_decay, flip=config.flip,
            max_scale=config.max_scale, seed=config.seed, with_masks=with_masks, time_limit_s=config.time_limit_s,
            max_steps=config.max_steps, checkpoints=checkpoints, resume=resume, on_epoch=on_epoch, log=log, **extra)
    finally:
        if checkpoints is not None:
            checkpoints.close()
    if extra:
        summary.update(recall)
    summary = {"model": config.model, **summary, "config": config_to_json(config),
               "device": f"{jax.default_backend()} ({platform.machine()})",
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if run_dir is not None:
        write_json_atomic(run_dir / "summary.json", summary)
        _save_example(state, test, run_dir / "examples.png", with_masks, extra.get("test_proposals"))
    return summary


def _save_example(state, test, path: Path, with_masks: bool, proposals=None, count: int = 6) -> None:
    import jax
    import numpy as np

    from jaxdl.detection.train import predict
    from jaxdl.viz.boxes import plot_detections

    k = min(count, len(test))
    out = jax.device_get(jax.jit(predict)(state, test.images[:k], None if proposals is None else proposals[:k]))
    plot_detections(test.images[:k], {key: np.asarray(v) for key, v in out.items()}, test.class_names, path,
                    ground_truth={"boxes": test.boxes[:k], "classes": test.classes[:k]}, masks=with_masks)


def add_detect_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``jaxdl detect-train`` (and of every ``experiments/*_shapes.py``)."""
    p.add_argument("--model", default=None, help="yolo_v1, ssd, faster_rcnn, faster_rcnn_fpn, mask_rcnn, fast_rcnn")
    p.add_argument("--model-options", default=None, metavar="K=V,...",
                   help="detector fields over the recipe's, e.g. head=fc (yolo_v1) or post_nms_top_n=32")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--train-images", type=int, default=None)
    p.add_argument("--test-images", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--time-limit", type=float, default=None, help="stop training after this many seconds")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="run folder: config.json, metrics.jsonl, checkpoints/, "
                   "summary.json, examples.png")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--smoke", action="store_true", help="shrink to seconds (tests)")
    p.add_argument("--no-progress", action="store_true", help="accepted for symmetry with `jaxdl train` (the "
                   "detection loop prints one line per epoch, no progress bar)")


def _apply_args(config: DetectionConfig, args: argparse.Namespace) -> DetectionConfig:
    updates = {k: v for k, v in {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
                                 "learning_rate": args.learning_rate, "train_images": args.train_images,
                                 "test_images": args.test_images, "image_size": args.image_size,
                                 "time_limit_s": args.time_limit, "seed": args.seed}.items() if v is not None}
    if getattr(args, "model_options", None):
        from jaxdl.train.io import parse_key_values
        try:
            options = parse_key_values(args.model_options)
        except ValueError as err:
            raise ConfigError(f"--model-options: {err}") from None
        base = config.model_options if args.model is None or args.model == config.model else \
            recipe(args.model).model_options
        updates["model_options"] = {**base, **options}
    for k in ("epochs", "batch_size", "train_images", "test_images"):
        if k in updates and updates[k] < 1:
            raise ConfigError(f"--{k.replace('_', '-')} must be >= 1, got {updates[k]}")
    if args.model is not None and args.model != config.model:
        updates.pop("model")
        config = dataclasses.replace(recipe(args.model), **{k: v for k, v in updates.items()})
        return smoke_config(config) if args.smoke else config
    config = dataclasses.replace(config, **updates)
    return smoke_config(config) if args.smoke else config


def cmd_detect_train(args: argparse.Namespace) -> int:
    """``jaxdl detect-train``: defaults from ``experiments/<model>_shapes.py`` where it exists."""
    config = _apply_args(recipe(args.model or "yolo_v1"), args)
    summary = run_detection(config, args.out, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    return 0


# The documented runs (docs/detection.md): epochs sized so the cosine schedule ends within the
# 600 s training cap on 2 shared CPU cores.
RECIPES = {
    "yolo_v1": {"model_options": {"head": "conv"}, "epochs": 8, "batch_size": 32},
    "ssd": {"epochs": 8, "batch_size": 32},
    "faster_rcnn": {"epochs": 6, "batch_size": 16},
    # 625 steps took 1277 s on 2 cores with other jobs running (docs/detection.md): a longer cap than the rest.
    "mask_rcnn": {"epochs": 5, "batch_size": 16, "time_limit_s": 1800.0},
    "fast_rcnn": {"epochs": 6, "batch_size": 16, "train_images": 1000},
    "faster_rcnn_fpn": {"epochs": 6, "batch_size": 16, "time_limit_s": 900.0},
}


def recipe(model: str) -> DetectionConfig:
    """The documented configuration of ``model`` (others: the :class:`DetectionConfig` defaults)."""
    from jaxdl.detection.detectors import DETECTORS, create_detector
    if model not in DETECTORS:
        create_detector(model)      # raises the ConfigError listing valid names
    return DetectionConfig(model=model, **RECIPES.get(model, {}))


def run_detection_experiment(get_config: Callable[[], DetectionConfig], name: str,
                             argv: Sequence[str] | None = None) -> dict:
    """The command line of ``experiments/*_shapes.py``: the detect-train options over ``get_config()``."""
    import sys

    from jaxdl.errors import JaxdlError

    parser = argparse.ArgumentParser(description=(get_config.__doc__ or "").strip().splitlines()[0])
    add_detect_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = _apply_args(get_config(), args)
        return run_detection(config, args.out or f"runs/{name}", resume=args.resume, overwrite=args.overwrite)
    except JaxdlError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
