"""The configuration of a training run: read once at the edge (CLI / experiment), then passed as a value."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from jaxdl.errors import ConfigError

__all__ = ["TrainConfig"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. Saved as ``RUN_DIR/config.json`` so a run can be rebuilt.

    Option dicts are passed through unchanged: ``model_options`` to ``jaxdl.models.create``,
    ``optimizer_options`` to ``jaxdl.optim.optimizer`` (momentum, weight_decay, clip_norm,
    accumulate_steps, ...), ``schedule_options`` to ``jaxdl.optim.schedule``.
    """

    model: str = "lenet5"
    dataset: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    augment: tuple[str, ...] = ()
    resize: str = "auto"
    input_size: int | None = None
    seed: int = 0
    data_dir: str | None = None
    val_fraction: float = 0.0
    train_limit: int | None = None
    test_limit: int | None = None
    steps_per_epoch: int | None = None
    eval_batch_size: int = 1000
    keep_checkpoints: int = 2
    # Class subset and per-class limit of the training set (transfer experiments): ``classes``
    # keeps those class ids (train and test) and renumbers them 0..k-1 in the given order.
    classes: tuple[int, ...] | None = None
    train_per_class: int | None = None
    # Fine-tuning (jaxdl.transfer.finetune): start from a run folder or a .safetensors/.pth file,
    # re-initialize the classifier head, freeze parameters whose path matches a pattern, scale the
    # update of the pretrained (non-head) parameters.
    init: str | None = None
    reset_head: bool = True
    freeze: tuple[str, ...] = ()
    backbone_lr_multiplier: float = 1.0
    # Scale and speed (jaxdl/train/parallel.py, docs/performance.md)
    parallel: str = "none"            # none | jit (Mesh + NamedSharding) | pmap (axis_name)
    devices: int | None = None        # devices to use with jit/pmap (default: all)
    precision: str = "float32"        # float32 | bfloat16 | float16 (compute dtype; params stay float32)
    remat: bool = False               # jax.checkpoint each step's forward (less memory, more compute)
    data_on_device: bool = False      # keep the training set on device, gather batches there
    # Time to accuracy (docs/performance.md): the first epoch whose ``target_metric`` reaches
    # ``target_accuracy`` (a fraction) is recorded in summary.json with the time it took;
    # ``stop_at_target`` ends the run there.
    target_accuracy: float | None = None
    target_metric: str = "test_accuracy"  # test_accuracy | val_accuracy
    stop_at_target: bool = False
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    optimizer_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    schedule_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval batch size must be >= 1, got {self.eval_batch_size}"),
            (self.learning_rate > 0, f"learning rate must be > 0, got {self.learning_rate}"),
            (0.0 <= self.val_fraction < 1.0, f"validation fraction must be in [0, 1), got {self.val_fraction}"),
            (self.train_limit is None or self.train_limit >= 1,
             f"train limit must be >= 1 example, got {self.train_limit}"),
            (self.test_limit is None or self.test_limit >= 1, f"test limit must be >= 1 example, got {self.test_limit}"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1,
             f"steps per epoch must be >= 1, got {self.steps_per_epoch}"),
            (self.input_size is None or self.input_size >= 1, f"input size must be >= 1, got {self.input_size}"),
            (self.keep_checkpoints >= 1, f"keep-checkpoints must be >= 1, got {self.keep_checkpoints}"),
            (self.train_per_class is None or self.train_per_class >= 1,
             f"train per class must be >= 1 example, got {self.train_per_class}"),
            (self.classes is None or (len(self.classes) >= 1 and len(set(self.classes)) == len(self.classes)),
             f"classes must be distinct class ids, got {self.classes}"),
            (self.backbone_lr_multiplier > 0,
             f"backbone learning-rate multiplier must be > 0, got {self.backbone_lr_multiplier}"),
            (self.parallel in ("none", "jit", "pmap"),
             f"parallel must be one of none, jit, pmap; got {self.parallel!r}"),
            (self.devices is None or self.devices >= 1, f"devices must be >= 1, got {self.devices}"),
            (self.precision in ("float32", "bfloat16", "float16"),
             f"precision must be one of float32, bfloat16, float16; got {self.precision!r}"),
            (self.target_accuracy is None or 0.0 < self.target_accuracy <= 1.0,
             f"target accuracy must be a fraction in (0, 1], got {self.target_accuracy}"
             + (f"; for {self.target_accuracy:g}% give {self.target_accuracy / 100:g}"
                if self.target_accuracy is not None and 1.0 < self.target_accuracy <= 100.0 else "")),
            (self.target_metric in ("test_accuracy", "val_accuracy"),
             f"target metric must be test_accuracy or val_accuracy, got {self.target_metric!r}"),
            (self.target_metric != "val_accuracy" or self.val_fraction > 0,
             "target metric val_accuracy needs a validation split: give a validation fraction (--val-fraction 0.1)"),
            (not self.stop_at_target or self.target_accuracy is not None,
             "stop at target needs a target accuracy (--target-accuracy 0.94)"),
            (self.resize in ("auto", "pad", "resize", "none"),
             f"resize must be one of auto, pad, resize, none; got {self.resize!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        object.__setattr__(self, "augment", tuple(self.augment))
        object.__setattr__(self, "freeze", tuple(self.freeze))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["augment"] = list(self.augment)
        out["freeze"] = list(self.freeze)
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
