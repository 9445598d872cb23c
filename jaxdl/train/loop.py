"""The one training loop of jaxdl: ``fit(config, out_dir)``.

A run directory holds::

    config.json      the TrainConfig (the run can be rebuilt from it)
    metrics.jsonl    one line per finished epoch (with the run's cumulative times, see TIMING_KEYS)
    summary.json     final figures (model, dataset, num_params, accuracies, speed, versions)
    curves.png       loss / accuracy / learning-rate curves
    confusion.png    test confusion matrix
    checkpoints/     orbax: last N epochs and the best one (by test accuracy)

Multi-process runs (``jax.distributed``, docs/performance.md): every process runs ``fit`` with the
same arguments; only process 0 touches the run folder (reads it on ``resume``, writes config,
metrics, checkpoints, summary and plots) and prints. It broadcasts its decisions (the config,
a refusal to overwrite, a restored checkpoint) to the others, which never read or write ``out``,
so the folder need only exist where process 0 runs.

Determinism: batch order is a pure function of (seed, epoch) and randomness of (seed, step),
so ``fit(..., resume=True)`` after a crash, even a SIGKILL mid-epoch, reproduces the
uninterrupted run's per-epoch metrics: it restarts the unfinished epoch from the last
checkpoint, which is written only at epoch ends.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data as jdata
from jaxdl import models, optim
from jaxdl.errors import ConfigError, NonFiniteLossError, ResumeError
from jaxdl.train.checkpoint import RunCheckpoints
from jaxdl.train.config import TrainConfig
from jaxdl.train.io import (check_new_run_dir, read_jsonl, replace_run_dir, write_json_atomic, write_jsonl_atomic,
                           write_text_atomic)
from jaxdl.train.losses import get_loss
from jaxdl.train.loss_scale import DynamicLossScale
from jaxdl.train.metrics import finalize
from jaxdl.train.parallel import (DataParallel, broadcast_from_primary, broadcast_json, is_primary_process,
                                  make_data_parallel, process_sum)
from jaxdl.train.state import TrainState, create_train_state
from jaxdl.train.steps import eval_step, predict_step, train_step

__all__ = ["fit", "prepare_images", "Experiment", "build_experiment", "TIMING_KEYS"]

# The per-epoch figures of metrics.jsonl that are measured times (they differ between two runs
# that compute the same thing):
#   epoch_seconds          this epoch: training, then evaluation
#   images_per_second      this epoch's training throughput after its first step
#   elapsed_train_seconds  the run so far: training only (the first epoch includes compilation)
#   elapsed_seconds        the run so far: training and evaluation (the time-to-accuracy clock)
# Both elapsed clocks continue across ``resume``; start-up (data loading, initialization) and
# checkpoint writing are not counted.
TIMING_KEYS = ("epoch_seconds", "images_per_second", "elapsed_train_seconds", "elapsed_seconds")


def prepare_images(key: jax.Array, images: jax.Array, train: bool, *, target_hw: tuple[int, int] | None,
                   resize: str, mean: tuple[float, ...], std: tuple[float, ...],
                   augment: Callable[[jax.Array, jax.Array], jax.Array] | None) -> jax.Array:
    """uint8 images -> normalised float32 model input, augmented in training. Runs on device.

    ``key``: in training one key per example (``[N]`` keys, :func:`jaxdl.train.steps.example_keys`),
    so each image's augmentation depends on its own key only; unused in evaluation.
    """
    x = jdata.to_model_input(images, target_hw, mode=resize)
    if train and augment is not None:
        x = jax.vmap(lambda k, image: augment(k, image[None])[0])(key, x)
    return jdata.normalize(x, mean, std)


class Experiment:
    """Everything built from a TrainConfig: data, model, optimizer, compiled steps.

    Built once by :func:`build_experiment`; the loop, evaluation and visualisation share it.
    """

    def __init__(self, config: TrainConfig, train_set, val_set, test_set, model, model_info, input_shape,
                 mean, std, steps_per_epoch, tx, loss_fn, prepare, parallel: DataParallel | None = None):
        self.config = config
        self.train_set, self.val_set, self.test_set = train_set, val_set, test_set
        self.model, self.model_info, self.input_shape = model, model_info, tuple(input_shape)
        self.mean, self.std = mean, std
        self.steps_per_epoch = steps_per_epoch
        self.tx, self.loss_fn, self.prepare = tx, loss_fn, prepare
        self.parallel = parallel or make_data_parallel("none")
        # One step function for every mode; DataParallel compiles it (jit / jit over a Mesh / pmap).
        self.train_step = self.parallel.compile_train_step(
            functools.partial(train_step, loss_fn=loss_fn, prepare=prepare))
        self.eval_step = jax.jit(functools.partial(eval_step, loss_fn=loss_fn, prepare=prepare))
        self.predict_step = jax.jit(functools.partial(predict_step, prepare=prepare))

    def init_state(self) -> TrainState:
        """A fresh single-device state (place it for training with ``self.parallel.put_state``)."""
        state = create_train_state(self.model, self.tx, input_shape=self.input_shape, seed=self.config.seed)
        if self.config.precision == "float16":  # float16 gradients underflow without loss scaling
            state = state.replace(loss_scale=DynamicLossScale.create())
        if self.config.init is None:
            return state
        # Fine-tuning: pretrained weights everywhere except (by default) the freshly initialized head.
        from jaxdl.transfer.finetune import load_pretrained, merge_pretrained

        pretrained = load_pretrained(self.config.init, self.config.model, self.config.model_options)
        variables = merge_pretrained({"params": state.params, "batch_stats": state.batch_stats}, pretrained,
                                     reset_head=self.config.reset_head)
        params = jax.tree_util.tree_map(jnp.asarray, variables["params"])
        batch_stats = jax.tree_util.tree_map(jnp.asarray, variables.get("batch_stats", {}))
        return state.replace(params=params, batch_stats=batch_stats, opt_state=self.tx.init(params))

    def device_batches(self, epoch: int) -> Iterator[dict[str, jax.Array]]:
        """``--data-on-device``: the training set lives in device memory (uploaded once); each step
        gathers its batch there from the epoch's index order (same order as the host loader)."""
        dp, config = self.parallel, self.config
        _check_parallel_setup(config, dp.mode)
        if getattr(self, "_device_data", None) is None:
            from jax.sharding import NamedSharding, PartitionSpec

            place = NamedSharding(dp.mesh, PartitionSpec()) if dp.mode == "jit" else None
            out = NamedSharding(dp.mesh, PartitionSpec(dp.mesh.axis_names[0])) if dp.mode == "jit" else None
            self._device_data = jax.device_put((self.train_set.images, self.train_set.labels), place)

            def gather(images, labels, index, mask):
                return {"image": images[index], "label": labels[index], "mask": mask}

            self._gather = jax.jit(gather, out_shardings=out)
        images, labels = self._device_data
        order = jdata.epoch_order(len(self.train_set), config.seed, epoch)
        size = config.batch_size
        multiple = dp.num_devices if dp.mode == "jit" else 1
        padded = -(-size // multiple) * multiple
        mask = np.concatenate([np.ones(size, np.float32), np.zeros(padded - size, np.float32)])
        for b in range(self.steps_per_epoch):
            index = np.concatenate([order[b * size:(b + 1) * size], np.zeros(padded - size, np.int64)])
            batch = self._gather(images, labels, index.astype(np.int32), mask)
            if padded == size:
                batch.pop("mask")
            yield batch

    def host_state(self, state: TrainState) -> TrainState:
        """A training state (replicated / stacked per device) as one copy on the default device:
        evaluation, checkpoints, plateau updates."""
        if self.parallel.mode == "none":
            return state
        return jax.device_put(self.parallel.host_state(state))

    def evaluate(self, state: TrainState, dataset, prefix: str) -> dict[str, float]:
        """Loss and accuracy of ``state`` (one host copy) on ``dataset``.

        Multi-process: each process evaluates its contiguous ``1 / process_count`` slice and the
        sums are added over processes (:func:`~jaxdl.train.parallel.process_sum`), so every process
        gets the same figures -- those of the whole set, equal to a one-process evaluation up to
        float32 summation order -- and takes the same plateau decisions from them.
        """
        count = jax.process_count()
        masked = False
        if count > 1:
            per = -(-len(dataset) // count)
            start = jax.process_index() * per
            index = np.arange(start, min(start + per, len(dataset)))
            masked = len(index) == 0  # fewer examples than processes: one masked dummy keeps the structure
            dataset = dataset.subset(index if not masked else np.zeros(1, np.int64))
        sums = None
        for batch in _padded_batches(dataset, self.config.eval_batch_size):
            if masked:
                batch = {**batch, "mask": np.zeros_like(batch["mask"])}
            out = self.eval_step(state, batch)
            sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
        return finalize(process_sum(sums) if count > 1 else jax.device_get(sums), prefix)

    def predict(self, state: TrainState, dataset) -> np.ndarray:
        """Predicted class ids for every example of ``dataset``."""
        preds = []
        for batch in _padded_batches(dataset, self.config.eval_batch_size):
            logits = self.predict_step(state, batch["image"])
            keep = np.asarray(batch["mask"]) > 0
            preds.append(np.asarray(jnp.argmax(logits, -1))[keep])
        return np.concatenate(preds)


def _padded_batches(dataset, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-size batches in order, the last one padded and masked (one compiled shape)."""
    n = len(dataset)
    size = min(batch_size, n)
    for start in range(0, n, size):
        images = dataset.images[start:start + size]
        labels = dataset.labels[start:start + size]
        mask = np.ones(len(labels), np.float32)
        pad = size - len(labels)
        if pad:
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
            labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
            mask = np.concatenate([mask, np.zeros(pad, np.float32)])
        yield {"image": images, "label": labels, "mask": mask}


def _model_fields(name: str) -> set[str]:
    """The dataclass fields of a registered model (empty when they cannot be read)."""
    import dataclasses

    builder = models.info(name).builder
    while hasattr(builder, "func"):
        builder = builder.func
    return {f.name for f in dataclasses.fields(builder)} if dataclasses.is_dataclass(builder) else set()


def build_experiment(config: TrainConfig) -> Experiment:
    """Load data, build the model, the optimizer and the compiled steps for ``config``."""
    model_info = models.info(config.model)  # ValueError with close names for an unknown model
    train_full = jdata.load(config.dataset, "train", data_dir=config.data_dir)
    test_set = jdata.load(config.dataset, "test", data_dir=config.data_dir)
    if config.classes is not None:  # before the splits and limits, so those count the kept classes only
        train_full, test_set = (_select_classes(d, config.classes) for d in (train_full, test_set))
    if config.val_fraction > 0:
        train_set, val_set = jdata.train_val_split(train_full, config.val_fraction, seed=config.seed)
    else:
        train_set, val_set = train_full, None
    if config.train_limit is not None and config.train_limit < len(train_set):
        order = np.random.default_rng([config.seed, 7919]).permutation(len(train_set))  # fixed random subset
        train_set = train_set.subset(np.sort(order[:config.train_limit]))
    if config.test_limit is not None and config.test_limit < len(test_set):  # quick runs: a fixed subset
        order = np.random.default_rng([config.seed, 104729]).permutation(len(test_set))
        test_set = test_set.subset(np.sort(order[:config.test_limit]))
    if config.train_per_class is not None:  # the first n of each class in a fixed random order
        order = np.random.default_rng([config.seed, 15485863]).permutation(len(train_set))
        keep = np.concatenate([order[train_set.labels[order] == c][:config.train_per_class]
                               for c in range(train_set.num_classes)])
        train_set = train_set.subset(np.sort(keep))
    if len(train_set) < config.batch_size:
        raise ConfigError(f"batch size {config.batch_size} is larger than the {len(train_set)} training examples; "
                          f"use a smaller --batch-size")

    height, width, channels = train_set.image_shape
    if config.input_size is not None:  # e.g. an ImageNet architecture trained at 32x32
        target_hw = (config.input_size, config.input_size)
    elif model_info.fixed_input and config.resize != "none":
        target_hw = tuple(model_info.input_shape[:2])
    else:
        target_hw = (height, width)
    input_shape = (*target_hw, channels)
    mean, std = jdata.channel_stats(train_set)
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    parallel = make_data_parallel(config.parallel, config.devices)  # before the model: pmap BN needs its axis
    _check_parallel_setup(config, parallel.mode)  # refused here, before fit writes the run folder
    speed = {}
    if config.precision != "float32":  # compute dtype; every family keeps float32 params
        speed["dtype"] = {"bfloat16": jnp.bfloat16, "float16": jnp.float16}[config.precision]
    if config.remat:
        speed.update(models.remat_options(config.model))
    sync = parallel.model_overrides
    if sync and "bn_axis_name" not in _model_fields(config.model):
        sync = {}  # no BatchNorm in this family: nothing to synchronise across devices
    try:
        model = models.create(config.model, num_classes=train_set.num_classes,
                              **{**config.model_options, **sync, **speed})
    except ValueError as err:
        if speed and "has no option" in str(err):
            raise ConfigError(f"--precision / --remat need a model field the model lacks: {err}") from None
        raise
    steps_per_epoch = jdata.num_batches(len(train_set), config.batch_size, drop_last=True)
    if config.steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    # Schedules count optimizer updates; with gradient accumulation k micro-batches make one update.
    accumulate = int(config.optimizer_options.get("accumulate_steps", 1))
    updates_per_epoch = max(1, steps_per_epoch // accumulate)
    learning_rate = optim.schedule(config.schedule, learning_rate=config.learning_rate,
                                   steps_per_epoch=updates_per_epoch, total_steps=updates_per_epoch * config.epochs,
                                   **config.schedule_options)
    if isinstance(learning_rate, optim.Plateau) and val_set is None:
        raise ConfigError("the plateau schedule is driven by the validation loss: pass a validation split "
                          "(--val-fraction 0.1)")
    tx = optim.optimizer(config.optimizer, learning_rate, **config.optimizer_options)
    if config.freeze or config.backbone_lr_multiplier != 1.0:
        from jaxdl.transfer.finetune import finetune_optimizer

        shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)),
                                                   train=False))["params"]
        tx = finetune_optimizer(tx, shapes, freeze=config.freeze,
                                backbone_lr_multiplier=config.backbone_lr_multiplier)
    loss_fn = get_loss(config.loss, **({"label_smoothing": config.label_smoothing}
                                       if config.loss == "cross_entropy" else {}))
    augment = jdata.make_augment(config.augment) if config.augment else None
    prepare = functools.partial(prepare_images, target_hw=target_hw, resize=config.resize, mean=mean, std=std,
                                augment=augment)
    return Experiment(config, train_set, val_set, test_set, model, model_info, input_shape, mean, std,
                      steps_per_epoch, tx, loss_fn, prepare, parallel)


def _check_parallel_setup(config: TrainConfig, mode: str) -> None:
    """Refuse what the data path cannot do on this many processes, before anything runs or is written."""
    if config.data_on_device and (mode == "pmap" or jax.process_count() > 1):
        raise ConfigError("--data-on-device works with --parallel none or jit on one host; "
                          "drop it or use --parallel jit")
    count = jax.process_count()
    if config.batch_size % count:
        raise ConfigError(f"the global batch size {config.batch_size} must be divisible by the {count} processes "
                          f"(each reads an equal shard); use --batch-size {count * max(1, config.batch_size // count)}")


def _select_classes(dataset, classes: tuple[int, ...]):
    """Keep the examples of ``classes`` (ids of ``dataset.classes``), renumbered 0..k-1 in that order."""
    bad = [c for c in classes if not 0 <= c < dataset.num_classes]
    if bad:
        raise ConfigError(f"classes {bad} are not class ids of {dataset.name} (0..{dataset.num_classes - 1})")
    keep = np.flatnonzero(np.isin(dataset.labels, classes))
    relabel = np.full(dataset.num_classes, -1, np.int32)
    relabel[list(classes)] = np.arange(len(classes), dtype=np.int32)
    return jdata.Dataset(dataset.images[keep], relabel[dataset.labels[keep]],
                         tuple(dataset.classes[c] for c in classes), dataset.name)


def _device_description() -> str:
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    if device.platform == "cpu":
        kind = f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
    return f"{device.platform}: {kind} x{jax.device_count()}"


def _prepare_run_dir(out: Path, config: TrainConfig, resume: bool, overwrite: bool) -> TrainConfig:
    config_path = out / "config.json"
    if resume:
        if not out.is_dir():
            raise ResumeError(f"cannot resume: {out} does not exist; start a new run with --out {out}")
        if not config_path.is_file():
            raise ResumeError(f"cannot resume: {out} holds no config.json, so it is not a jaxdl run folder "
                              f"(or it is empty); start a new run with --out")
        import json

        saved = TrainConfig.from_dict(json.loads(config_path.read_text()))
        if config.epochs != saved.epochs:  # the one thing a resume may change: train for longer
            saved = TrainConfig.from_dict({**saved.to_dict(), "epochs": config.epochs})
            write_text_atomic(config_path, saved.to_json() + "\n")
        return saved
    check_new_run_dir(out, overwrite, resume_hint=f"--resume {out}")
    return config


def _start_run_dir(out: Path, config: TrainConfig) -> None:
    """Create the folder of a new run (called only once the data and model were built successfully)."""
    replace_run_dir(out)
    write_text_atomic(out / "config.json", config.to_json() + "\n")


def _from_primary(decide: Callable[[], Any]) -> Any:
    """``decide()`` run on process 0 only; its JSON-able result is returned on every process
    (on one process: simply ``decide()``).

    A jaxdl error raised there (a refused ``--out``, a bad ``--resume`` folder) is raised on every
    process with the same message, so no process is left waiting for the others.
    """
    result = None
    if is_primary_process():
        try:
            result = {"value": decide()}
        except (ConfigError, ResumeError) as err:
            result = {"error": type(err).__name__, "message": str(err)}
            broadcast_json(result)
            raise
    result = broadcast_json(result)
    if "error" in result:
        raise {"ConfigError": ConfigError, "ResumeError": ResumeError}[result["error"]](result["message"])
    return result["value"]


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%}"]
    if "val_loss" in row:
        parts.append(f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.2%}")
    parts.append(f"test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.2%}")
    parts.append(f"lr {row['learning_rate']:.3g}")
    parts.append(f"{row['images_per_second']:.0f} img/s")
    return " | ".join(parts)


def _target_epoch(history: list[dict[str, Any]], config: TrainConfig) -> int | None:
    """The first epoch whose ``config.target_metric`` reached ``config.target_accuracy`` (None: not yet)."""
    if config.target_accuracy is None:
        return None
    return next((row["epoch"] for row in history if row[config.target_metric] >= config.target_accuracy), None)


def _target_summary(history: list[dict[str, Any]], config: TrainConfig) -> dict[str, Any]:
    if config.target_accuracy is None:
        return {}
    epoch = _target_epoch(history, config)
    row = history[epoch - 1] if epoch is not None else None
    return {
        "target_accuracy": config.target_accuracy,
        "target_metric": config.target_metric,
        "target_reached": epoch is not None,
        "target_epoch": epoch,
        "target_step": row["step"] if row else None,
        "time_to_target_seconds": row["elapsed_seconds"] if row else None,
        "time_to_target_train_seconds": row["elapsed_train_seconds"] if row else None,
    }


def fit(config: TrainConfig, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
        progress: bool | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``config`` into the run folder ``out`` and return the summary dict.

    Args:
      resume: continue the run in ``out`` from its last checkpoint (its saved config is used;
        only ``epochs`` may grow). A missing or non-run folder raises ResumeError.
      overwrite: replace an existing run folder instead of refusing to touch it.
      progress: show a tqdm bar per epoch (default: when stderr is a terminal).
      log: where epoch lines go (default: print to stdout). Multi-process: process 0 only logs,
        shows the bar and writes ``out``; every process returns the summary (the same figures;
        the timings are each process's own).

    Time to accuracy: with ``config.target_accuracy`` the summary records the first epoch whose
    ``config.target_metric`` reached it (``target_epoch``, ``target_step``) and the run's clocks
    at the end of that epoch (``time_to_target_seconds``: training and evaluation so far;
    ``time_to_target_train_seconds``: training only, compilation included); accuracy is checked
    at epoch ends. ``config.stop_at_target`` ends the run after that epoch (also on resume).
    Raises:
      NonFiniteLossError: the loss became NaN/inf; checkpoints of earlier epochs are intact.
    """
    from tqdm.auto import tqdm

    primary = is_primary_process()  # process 0 of a multi-process run (always True on one process)
    log = (log or (lambda s: print(s, flush=True))) if primary else (lambda s: None)
    out = Path(out)
    if jax.process_count() == 1:
        config = _prepare_run_dir(out, config, resume, overwrite)
    else:  # process 0 reads / checks the folder; the others take its config (they never see `out`)
        config = TrainConfig.from_dict(_from_primary(lambda: _prepare_run_dir(out, config, resume, overwrite).to_dict()))
    exp = build_experiment(config)  # bad names or missing data fail here, before anything is written
    if primary and not resume:
        _start_run_dir(out, config)
    state = exp.init_state()
    num_params = models.count_params(state.params)
    checkpoints = RunCheckpoints(out, keep=config.keep_checkpoints) if primary else None

    history: list[dict[str, Any]] = []
    start_epoch, train_seconds, elapsed_seconds = 0, 0.0, 0.0
    if resume:
        restored = []

        def restore_meta():  # process 0 reads its checkpoint; a ResumeError there stops every process
            if checkpoints.latest_epoch() is None:
                return None
            restored.append(checkpoints.restore(state))
            return restored[0][1]

        meta = _from_primary(restore_meta)
        if meta is None:
            log(f"{out}: no finished epoch was checkpointed; starting epoch 1 again with the saved config")
        else:
            state = restored[0][0] if restored else state
            if jax.process_count() > 1:  # every process continues from process 0's checkpoint
                tree = broadcast_from_primary(state.checkpoint_tree())
                state = state.replace(**jax.tree_util.tree_map(jnp.asarray, tree))
            history, start_epoch, train_seconds = list(meta["history"]), int(meta["epoch"]), float(meta["train_seconds"])
            # runs checkpointed before the elapsed clock existed: their epochs' own times add up to it
            elapsed_seconds = float(meta.get("elapsed_seconds", sum(r["epoch_seconds"] for r in history)))
            log(f"resumed {out} after epoch {start_epoch} (step {int(state.step)})")
    dp = exp.parallel
    state = dp.put_state(state) if dp.mode != "none" else state
    if primary:
        write_jsonl_atomic(out / "metrics.jsonl", history)  # drops lines of an epoch that was not checkpointed
    best = max((row["test_accuracy"] for row in history), default=-1.0)
    show_bar = (sys.stderr.isatty() if progress is None else progress) and primary
    target_epoch = _target_epoch(history, config)
    if config.stop_at_target and target_epoch is not None:
        log(f"{config.target_metric} reached the target {config.target_accuracy:.2%} in epoch {target_epoch}; "
            f"not training further (stop at target)")

    try:
        for epoch in range(start_epoch, config.epochs):
            if config.stop_at_target and target_epoch is not None:
                break
            epoch_start = time.perf_counter()
            if config.data_on_device:
                batches = exp.device_batches(epoch)
            else:
                batches = jdata.batches(exp.train_set, config.batch_size, seed=config.seed, epoch=epoch,
                                        shuffle=True, drop_last=True, shard=(jax.process_index(), jax.process_count()))
                batches = jdata.prefetch_to_device(_take(batches, exp.steps_per_epoch), size=2,
                                                   put=dp.put_batch if dp.mode != "none" else None)
            sums, pending = None, None
            bar = tqdm(total=exp.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show_bar,
                       leave=False, unit="step", dynamic_ncols=True)
            first_step_done = None
            for batch in batches:
                step_number = dp.step_of(state) if pending is None else pending[0] + 1
                state, metrics = exp.train_step(state, batch)
                # Check the previous step's loss while this one runs (one step of lag, no stall).
                if pending is not None:
                    _check_finite(*pending, dp)
                pending = (step_number, metrics["loss"])
                batch_sums = {k: metrics[k] for k in ("loss_sum", "correct", "correct5", "count")}
                sums = batch_sums if sums is None else jax.tree_util.tree_map(jnp.add, sums, batch_sums)
                if first_step_done is None:
                    jax.block_until_ready(metrics["loss"])
                    first_step_done = time.perf_counter()
                if show_bar:
                    bar.update(1)
                    if bar.n % 10 == 0:
                        bar.set_postfix(loss=f"{float(dp.host_metrics(metrics['loss'])):.4f}")
            bar.close()
            if pending is not None:
                _check_finite(*pending, dp)
            jax.block_until_ready(state.params)
            epoch_train_time = time.perf_counter() - epoch_start
            steady = time.perf_counter() - first_step_done
            images = exp.steps_per_epoch * config.batch_size
            ips = (images - config.batch_size) / steady if steady > 0 and exp.steps_per_epoch > 1 else images / epoch_train_time

            host = exp.host_state(state)  # one copy for evaluation and checkpoints (gathered from devices)
            row: dict[str, Any] = {"epoch": epoch + 1, "step": int(host.step)}
            row.update(finalize(dp.host_metrics(sums), "train_"))
            if exp.val_set is not None:
                row.update(exp.evaluate(host, exp.val_set, "val_"))
            row.update(exp.evaluate(host, exp.test_set, "test_"))
            row["learning_rate"] = float(optim.current_learning_rate(host.opt_state))
            if exp.val_set is not None:
                host = host.replace(opt_state=optim.plateau_update(host.opt_state, value=row["val_loss"]))
                state = dp.put_state(host) if dp.mode != "none" else host
            row["epoch_seconds"] = time.perf_counter() - epoch_start
            row["images_per_second"] = ips
            train_seconds += epoch_train_time
            elapsed_seconds += row["epoch_seconds"]
            row["elapsed_train_seconds"] = train_seconds
            row["elapsed_seconds"] = elapsed_seconds
            history.append(row)
            is_best = row["test_accuracy"] > best
            best = max(best, row["test_accuracy"])
            meta = {"epoch": epoch + 1, "history": history, "train_seconds": train_seconds,
                    "elapsed_seconds": elapsed_seconds, "config": config.to_dict()}
            if primary:
                checkpoints.save(epoch + 1, host, meta, is_best=is_best)
                write_jsonl_atomic(out / "metrics.jsonl", history)
            line = _epoch_line(row, config.epochs)
            if target_epoch is None and config.target_accuracy is not None:
                target_epoch = _target_epoch(history, config)
                if target_epoch is not None:
                    line += (f" | target {config.target_accuracy:.2%} reached after {elapsed_seconds:.1f} s"
                             + (" (stopping)" if config.stop_at_target else ""))
            log(line)
    finally:
        if checkpoints is not None:
            checkpoints.close()

    host = exp.host_state(state)
    summary = _summary(config, exp, host, history, num_params, train_seconds)
    if primary:
        write_json_atomic(out / "summary.json", summary)
        _plots(out, exp, host, history)
    target = ""
    if config.target_accuracy is not None:
        target = (f"; target {config.target_accuracy:.2%} reached in epoch {summary['target_epoch']} after "
                  f"{summary['time_to_target_seconds']:.1f} s" if summary["target_reached"]
                  else f"; target {config.target_accuracy:.2%} not reached")
    log(f"test accuracy {summary['test_accuracy']:.2%} (best {summary['best_test_accuracy']:.2%}); "
        f"{summary['images_per_second']:.0f} img/s{target}; outputs in {out}")
    return summary


def _take(iterator, n: int):
    for i, item in enumerate(iterator):
        if i >= n:
            break
        yield item


def _check_finite(step: int, loss: jax.Array, dp: DataParallel) -> None:
    value = float(dp.host_metrics(loss))
    if not math.isfinite(value):
        raise NonFiniteLossError(step, value)


def _summary(config, exp, state, history, num_params, train_seconds) -> dict[str, Any]:
    import flax
    import optax

    last = history[-1]
    return {
        "model": config.model,
        "dataset": config.dataset,
        "num_params": int(num_params),
        "epochs": len(history),
        "steps": int(state.step),
        "train_examples": len(exp.train_set),
        "test_examples": len(exp.test_set),
        "input_shape": list(exp.input_shape),
        "test_accuracy": last["test_accuracy"],
        "test_top5_accuracy": last["test_top5_accuracy"],
        "test_loss": last["test_loss"],
        "best_test_accuracy": max(r["test_accuracy"] for r in history),
        "best_epoch": max(history, key=lambda r: r["test_accuracy"])["epoch"],
        "train_accuracy": last["train_accuracy"],
        "train_seconds": train_seconds,
        "elapsed_seconds": last.get("elapsed_seconds", sum(r["epoch_seconds"] for r in history)),
        "images_per_second": statistics.median(r["images_per_second"] for r in history),
        **_target_summary(history, config),
        "jax_version": jax.__version__,
        "flax_version": flax.__version__,
        "optax_version": optax.__version__,
        "device": _device_description(),
        "config": config.to_dict(),
    }


def _plots(out: Path, exp: Experiment, state: TrainState, history) -> None:
    from jaxdl import viz

    viz.plot_curves(history, out / "curves.png")
    predictions = exp.predict(state, exp.test_set)
    matrix = viz.confusion_matrix(exp.test_set.labels, predictions, exp.test_set.num_classes)
    viz.plot_confusion(matrix, list(exp.test_set.classes), out / "confusion.png")
