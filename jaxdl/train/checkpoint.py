"""Checkpoints of a run through orbax: the last N epochs plus the best one.

Multi-process runs: only process 0 creates a :class:`RunCheckpoints` (``jaxdl.train.loop.fit``);
the other processes receive a restored state from it by broadcast.

Layout under ``RUN_DIR/checkpoints``: ``last/<epoch>/`` (orbax keeps ``keep`` of them) and
``best/<epoch>/`` (only the best by test accuracy). Each holds the state pytree and a JSON
``meta`` item (epoch, metrics history, the config), written atomically by orbax: a process
killed mid-save leaves the previous checkpoints intact and no half-written one is restored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxdl.errors import ResumeError
from jaxdl.train.state import TrainState

__all__ = ["RunCheckpoints"]


def _manager(directory: Path, keep: int) -> ocp.CheckpointManager:
    """An orbax manager used by this process alone: in a multi-process run only process 0 writes
    checkpoints (of the host copy of the replicated state) and nobody else takes part, so the
    other processes need neither the folder nor orbax's cross-process barriers."""
    if jax.process_count() == 1:
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        return ocp.CheckpointManager(directory, options=options)
    me = jax.process_index()
    directory.mkdir(parents=True, exist_ok=True)  # orbax refuses create=True with active_processes
    alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=False, enable_async_checkpointing=False,
                                           multiprocessing_options=alone)
    return ocp.CheckpointManager(directory, options=options)


class RunCheckpoints:
    """Save / restore the checkpoints of one run directory."""

    def __init__(self, run_dir: str | os.PathLike, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep must be >= 1 checkpoint, got {keep}")
        self.root = Path(run_dir).absolute() / "checkpoints"
        self.last = _manager(self.root / "last", keep)
        self.best = _manager(self.root / "best", 1)

    def save(self, epoch: int, state: TrainState, meta: dict[str, Any], *, is_best: bool) -> None:
        tree = state.checkpoint_tree()
        if jax.process_count() > 1:  # orbax refuses process-local jax.Arrays there; numpy is saved as is
            tree = jax.device_get(tree)
        args = ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta))
        self.last.save(epoch, args=args)
        if is_best:
            self.best.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                          meta=ocp.args.JsonSave(meta)))
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def latest_epoch(self) -> int | None:
        return self.last.latest_step()

    def restore(self, like: TrainState, *, which: str = "last", epoch: int | None = None
                ) -> tuple[TrainState, dict[str, Any]]:
        """Restore into the structure of ``like`` (a freshly initialised state of the same config)."""
        manager = self.last if which == "last" else self.best
        epoch = manager.latest_step() if epoch is None else epoch
        if epoch is None:
            raise ResumeError(f"no {which} checkpoint in {manager.directory}; the run has not finished an epoch")
        if jax.process_count() > 1:  # numpy targets restore as numpy (the loop broadcasts them)
            abstract = jax.device_get(like.checkpoint_tree())
        else:
            abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like.checkpoint_tree())
        restored = manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                   meta=ocp.args.JsonRestore()))
        tree = restored["state"]
        return like.replace(**tree), dict(restored["meta"])

    def close(self) -> None:
        self.last.close()
        self.best.close()


def load_run(run_dir: str | os.PathLike, *, which: str = "last", epoch: int | None = None
             ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Read a run folder back: ``(TrainConfig, {"params", "batch_stats"}, meta)``.

    The arrays come from the checkpoint as saved (no model needs to be built first); rebuild the
    model with ``models.create(config.model, num_classes=<head width>, **config.model_options)``.
    Raises ResumeError (bad input) for a folder that is not a finished jaxdl run.
    """
    import json

    from jaxdl.train.config import TrainConfig

    root = Path(run_dir)
    config_path = root / "config.json"
    if not config_path.is_file():
        raise ResumeError(f"{root} holds no config.json, so it is not a jaxdl run folder")
    config = TrainConfig.from_dict(json.loads(config_path.read_text()))
    directory = root.absolute() / "checkpoints" / which
    if not directory.is_dir():
        raise ResumeError(f"{root} has no {which} checkpoint (no finished epoch)")
    manager = _manager(directory, 1)
    try:
        epoch = manager.latest_step() if epoch is None else epoch
        if epoch is None:
            raise ResumeError(f"{root} has no {which} checkpoint (no finished epoch)")
        restored = manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                                   meta=ocp.args.JsonRestore()))
    finally:
        manager.close()
    state = restored["state"]
    variables = {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}
    return config, variables, dict(restored["meta"])
