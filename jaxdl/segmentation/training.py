"""Training a segmenter on the generated shapes set: ``fit_segmentation(config, out)``.

It reuses the classifier machinery rather than forking it: :class:`jaxdl.train.TrainState`,
:func:`jaxdl.train.create_train_state`, the pure :func:`jaxdl.train.train_step` /
:func:`~jaxdl.train.eval_step` (with ``loss_fn=pixel_cross_entropy`` and
``metrics_fn=segmentation_sums``), :mod:`jaxdl.optim`'s optimizer and schedule factories and the
atomic writers of :mod:`jaxdl.train.io`. What is specific here is only the data (images with
per-pixel labels instead of ``Dataset``'s per-image labels) and the confusion-matrix metrics.

A run folder holds ``config.json``, ``metrics.jsonl`` (one line per epoch), ``summary.json``
and ``predictions.png`` (test images, ground truth, prediction). Runs are short and bounded
(minutes), so there are no checkpoints and no resume: a rerun reproduces the same numbers
(data order is ``epoch_order(n, seed, epoch)``, randomness ``fold_in(rng, step)``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data as jdata
from jaxdl import models, optim
from jaxdl.data.shapes import ShapesSet, make_shapes
from jaxdl.errors import ConfigError, NonFiniteLossError
from jaxdl.segmentation.losses import IGNORE_LABEL, pixel_cross_entropy
from jaxdl.segmentation.metrics import iou_per_class, segmentation_scores, segmentation_sums
from jaxdl.train.io import write_json_atomic, write_jsonl_atomic
from jaxdl.train.state import create_train_state
from jaxdl.train.steps import eval_step, predict_step, train_step

__all__ = ["SegmentationConfig", "fit_segmentation", "segmentation_batches", "smoke_config", "overlay_figure"]


@dataclasses.dataclass(frozen=True)
class SegmentationConfig:
    """Everything a segmentation run depends on (saved as config.json).

    Attributes:
      model: a name from ``models.available("segmentation")``.
      model_options: module fields (``width``, ``fc_width``, ...), e.g. ``{"width": 0.25}``.
      num_train / num_test / image_size / max_objects: the shapes sets (train seed ``seed``,
        test seed ``seed + 10_000``, so the test images are never trained on).
      epochs, batch_size, optimizer, learning_rate, weight_decay, schedule ("cosine" or "constant"),
      warmup_epochs, clip_norm: the optimisation (``jaxdl.optim``).
      steps_per_epoch: cap on updates per epoch (smoke runs); ``None`` = all batches.
      seed: parameters, data and randomness.
    """

    model: str = "fcn8s"
    model_options: dict = dataclasses.field(default_factory=dict)
    num_train: int = 2000
    num_test: int = 500
    image_size: int = 64
    max_objects: int = 4
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    clip_norm: float | None = None
    steps_per_epoch: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.model not in models.available("segmentation"):
            raise ConfigError(f"unknown segmentation model {self.model!r}; choose one of "
                              f"{', '.join(models.available('segmentation'))}")
        for name in ("num_train", "num_test", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size > self.num_train:
            raise ConfigError(f"batch_size {self.batch_size} is larger than num_train {self.num_train}")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def smoke_config(config: SegmentationConfig) -> SegmentationConfig:
    """A few-second version of ``config``: the model's tiny smoke widths, 64 train / 32 test images, 3 steps."""
    entry = models.info(config.model)
    return dataclasses.replace(config, model_options={**config.model_options, **dict(entry.smoke_overrides)},
                               num_train=64, num_test=32,
                               image_size=64, epochs=1, batch_size=16, steps_per_epoch=3)


def segmentation_batches(shapes: ShapesSet, batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True,
                         pad_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """``{"image": <u8>[B, H, W, 3], "label": <i32>[B, H, W]}`` batches of a shapes set.

    Training (``shuffle``) drops the last partial batch, so every step has one shape; with
    ``pad_last`` (evaluation) the last batch is padded to ``batch_size`` with copies whose labels
    are all ``IGNORE_LABEL``, so they count nowhere.
    """
    n = len(shapes)
    order = jdata.epoch_order(n, seed, epoch) if shuffle else np.arange(n)
    stop = n if pad_last else n - n % batch_size
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        images, labels = shapes.images[idx], shapes.semantic[idx]
        if len(idx) < batch_size:
            fill = batch_size - len(idx)
            images = np.concatenate([images, np.repeat(images[:1], fill, axis=0)])
            labels = np.concatenate([labels, np.full((fill,) + labels.shape[1:], IGNORE_LABEL, labels.dtype)])
        yield {"image": images, "label": labels}


def _prepare(key, images, train, *, mean, std):
    """uint8 -> float32 normalised by the training set's channel statistics (on device)."""
    del key, train
    x = jnp.asarray(images, jnp.float32) / 255.0
    return (x - jnp.asarray(mean)) / jnp.asarray(std)


def _evaluate(eval_fn, state, shapes: ShapesSet, batch_size: int) -> dict[str, float]:
    total = None
    for batch in segmentation_batches(shapes, batch_size, shuffle=False, pad_last=True):
        sums = eval_fn(state, batch)
        total = sums if total is None else jax.tree_util.tree_map(jnp.add, total, sums)
    return {k: np.asarray(v) for k, v in total.items()}


def fit_segmentation(config: SegmentationConfig, out: str | os.PathLike | None = None, *,
                     log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train ``config.model`` on the shapes set and evaluate mean IU / pixel accuracy on held-out images.

    Returns the summary (also ``out/summary.json``): ``test_mean_iou``, ``test_pixel_accuracy``
    (``test_accuracy`` is the same number, for tools that read classifier summaries),
    ``test_iou_per_class``, ``test_mean_accuracy``, ``test_fw_iou``, ``train_loss``, ``epochs``,
    ``num_params``, ``train_seconds``, ``device``.
    """
    log = log or (lambda s: None)
    train = make_shapes(config.num_train, image_size=config.image_size, max_objects=config.max_objects,
                        seed=config.seed)
    test = make_shapes(config.num_test, image_size=config.image_size, max_objects=config.max_objects,
                       seed=config.seed + 10_000)
    num_labels = train.num_classes + 1  # + background
    model = models.create(config.model, num_classes=num_labels, **config.model_options)
    steps_per_epoch = len(train) // config.batch_size
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, int(config.steps_per_epoch))
    total_steps = steps_per_epoch * config.epochs
    lr: Any = config.learning_rate
    if config.schedule == "cosine":
        lr = optim.schedule("cosine", learning_rate=config.learning_rate, steps_per_epoch=steps_per_epoch,
                            total_steps=total_steps, **({"warmup_epochs": config.warmup_epochs}
                                                        if config.warmup_epochs else {}))
    tx = optim.optimizer(config.optimizer, lr, weight_decay=config.weight_decay, clip_norm=config.clip_norm)
    shape = (config.image_size, config.image_size, 3)
    state = create_train_state(model, tx, input_shape=shape, seed=config.seed)
    num_params = int(sum(np.size(p) for p in jax.tree_util.tree_leaves(state.params)))

    pixels = train.images.reshape(-1, 3).astype(np.float64) / 255.0
    mean, std = tuple(pixels.mean(0).astype(np.float32)), tuple(pixels.std(0).astype(np.float32) + 1e-3)
    prepare = functools.partial(_prepare, mean=mean, std=std)
    step_fn = jax.jit(functools.partial(train_step, loss_fn=pixel_cross_entropy, prepare=prepare,
                                        metrics_fn=segmentation_sums), donate_argnums=0)
    eval_fn = jax.jit(functools.partial(eval_step, loss_fn=pixel_cross_entropy, prepare=prepare,
                                        metrics_fn=segmentation_sums))

    out_dir = None if out is None else Path(out)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "config.json", config.to_json())
    log(f"{config.model}: {num_params:,} parameters, {len(train)} train / {len(test)} test images "
        f"{config.image_size}x{config.image_size}, {config.epochs} epochs x {steps_per_epoch} steps")
    history: list[dict[str, Any]] = []
    start_time = time.perf_counter()
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        sums = None
        for i, batch in enumerate(segmentation_batches(train, config.batch_size, seed=config.seed, epoch=epoch)):
            if i >= steps_per_epoch:
                break
            state, metrics = step_fn(state, batch)
            metrics.pop("loss"), metrics.pop("total_loss")
            sums = metrics if sums is None else jax.tree_util.tree_map(jnp.add, sums, metrics)
        train_scores = segmentation_scores({k: np.asarray(v) for k, v in sums.items()}, "train_")
        if not np.isfinite(train_scores["train_loss"]):
            raise NonFiniteLossError(int(state.step), train_scores["train_loss"])
        test_scores = segmentation_scores(_evaluate(eval_fn, state, test, config.batch_size), "test_")
        row = {"epoch": epoch + 1, "step": int(state.step), **train_scores, **test_scores,
               "epoch_seconds": time.perf_counter() - t0}
        history.append(row)
        log(f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f}, train mIoU "
            f"{row['train_mean_iou']:.4f} | test mIoU {row['test_mean_iou']:.4f}, pixel acc "
            f"{row['test_pixel_accuracy']:.4f} ({row['epoch_seconds']:.1f} s)")
        if out_dir is not None:
            write_jsonl_atomic(out_dir / "metrics.jsonl", history)
    train_seconds = time.perf_counter() - start_time

    final = _evaluate(eval_fn, state, test, config.batch_size)
    scores = segmentation_scores(final, "test_")
    summary = {
        "model": config.model, "model_options": config.model_options, "num_params": num_params,
        "epochs": config.epochs, "steps": int(state.step), "train_examples": len(train), "test_examples": len(test),
        "image_size": config.image_size, "class_names": list(train.semantic_names),
        **scores, "test_accuracy": scores["test_pixel_accuracy"],
        "test_iou_per_class": [None if np.isnan(v) else float(v) for v in iou_per_class(final["confusion"])],
        "train_loss": history[-1]["train_loss"], "train_seconds": train_seconds,
        "device": f"{jax.devices()[0].platform} ({platform.processor() or platform.machine()}, "
                  f"{os.cpu_count()} cpus visible)",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    if out_dir is not None:
        write_json_atomic(out_dir / "summary.json", summary)
        predict = jax.jit(functools.partial(predict_step, prepare=prepare))
        images = test.images[:6]
        predictions = np.asarray(jnp.argmax(predict(state, images), -1))
        overlay_figure(images, test.semantic[:6], predictions, train.semantic_names, out_dir / "predictions.png",
                       title=f"{config.model} on shapes: test mIoU {scores['test_mean_iou']:.3f}")
    log(f"test mean IoU {scores['test_mean_iou']:.4f}, pixel accuracy {scores['test_pixel_accuracy']:.4f} "
        f"({train_seconds:.0f} s training)")
    return summary


# Label colours of the overlays: background black, then one colour per class.
_LABEL_COLOURS = np.array([(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48),
                           (145, 30, 180), (70, 240, 240), (240, 50, 230)], np.uint8)


def overlay_figure(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, names, path, *,
                   title: str = "") -> Path:
    """PNG with one column per image: the image, the ground truth over it, the prediction over it.

    ``images <u8>[n, H, W, 3]``, ``labels``/``predictions <int>[n, H, W]`` (labels >= len(colours)
    such as the ignore label are drawn white).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from jaxdl.viz.plots import _save  # the one PNG writer (atomic) of jaxdl.viz

    def paint(img, lab):
        colours = np.vstack([_LABEL_COLOURS, [[255, 255, 255]]])
        lab = np.where((lab >= 0) & (lab < len(_LABEL_COLOURS)), lab, len(_LABEL_COLOURS))
        blend = 0.45 * img.astype(np.float32) + 0.55 * colours[lab].astype(np.float32)
        return np.where((lab == 0)[..., None], img, blend).astype(np.uint8)

    n = len(images)
    fig = Figure(figsize=(1.6 * n, 5.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, n, squeeze=False)
    for j in range(n):
        for i, (img, row) in enumerate(((images[j], "image"), (paint(images[j], labels[j]), "truth"),
                                         (paint(images[j], predictions[j]), "prediction"))):
            axes[i, j].imshow(img, interpolation="nearest")
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(row)
    handles = [Patch(color=_LABEL_COLOURS[k] / 255.0, label=name) for k, name in enumerate(names) if k > 0]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _save(fig, path)


def summary_line(summary: dict[str, Any]) -> str:
    return json.dumps({k: summary[k] for k in ("model", "test_mean_iou", "test_pixel_accuracy", "train_seconds")})


def run_segmentation_experiment(get_config: Callable[[], SegmentationConfig], name: str, argv=None, *,
                                model_choices: tuple[str, ...] = ()) -> dict:
    """The ``main`` of a segmentation experiment script: ``--out``, ``--smoke``, ``--epochs`` and, when the
    script offers ``model_choices``, ``--model`` (then ``get_config(model)`` builds that model's recipe)."""
    import argparse
    import sys

    from jaxdl.errors import JaxdlError

    parser = argparse.ArgumentParser(description=(get_config.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--out", default=f"runs/{name}")
    parser.add_argument("--smoke", action="store_true", help="shrink to a few seconds (used by the tests)")
    if model_choices:
        parser.add_argument("--model", choices=model_choices, default=None, help="another variant, same recipe")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true", help="print only the final line")
    args = parser.parse_args(argv)
    try:
        config = get_config(args.model) if getattr(args, "model", None) else get_config()
        if args.epochs:
            config = dataclasses.replace(config, epochs=args.epochs)
        if args.smoke:
            config = smoke_config(config)
        return fit_segmentation(config, args.out, log=None if args.no_progress else print)
    except JaxdlError as err:  # bad input: one line, exit code 2
        print(f"{name}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def segment_train_command(args) -> int:
    """``jaxdl segment-train``: build a :class:`SegmentationConfig` from the parsed flags and fit it."""
    import ast

    options: dict[str, Any] = {}
    for item in args.model_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-option expects KEY=VALUE (e.g. width=0.125), got {item!r}")
        try:
            options[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key.strip()] = value  # a plain string such as backbone=vgg16_bn
    options.update(getattr(args, "model_options", None) or {})
    config = SegmentationConfig(model=args.model, model_options=options, num_train=args.num_train,
                                num_test=args.num_test, image_size=args.image_size, epochs=args.epochs,
                                batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed)
    if args.smoke:
        config = smoke_config(config)
    try:
        models.create(config.model, num_classes=4, **config.model_options)
    except ValueError as err:  # an option the model lacks: bad input, not a crash
        raise ConfigError(str(err)) from None
    summary = fit_segmentation(config, args.out)
    print(summary_line(summary))
    return 0
