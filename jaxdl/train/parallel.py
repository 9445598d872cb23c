"""Data-parallel training over many devices and hosts, two ways that give the same step.

* ``"jit"``: one program over a ``Mesh`` of devices (GSPMD). The global batch is a
  ``NamedSharding(mesh, P("data"))`` array (split on its first axis), the state is replicated
  (``P()``); XLA inserts the all-reduces. BatchNorm statistics are global-batch statistics
  without any ``axis_name`` (the model sees one logical batch).
* ``"pmap"``: one program per device (``jax.pmap(axis_name="data")``); the batch is reshaped to
  ``[devices, B / devices, ...]``, the state carries a leading device axis, the train step
  ``psum``-s gradients and metrics, and BatchNorm ``psum``-s its sums and counts -- models must be
  created with ``bn_axis_name="data"`` (``models.create(name, bn_axis_name=DATA_AXIS)``).
* ``"none"``: plain ``jax.jit`` on the default device.

When the global batch ``B`` is not a multiple of the device count, each host pads its share
to a multiple of its devices and adds ``batch["mask"]`` (1 real, 0 padding): the loss, the
metrics and the BatchNorm statistics count real examples only, so the step still equals one
step on the ``B`` real examples (tested with 8 fake CPU devices, ``tests/train/test_parallel.py``).

Multi-host (:func:`initialize_distributed`): ``jax.distributed.initialize`` with the coordinator
address, the number of processes and this process's id; every process reads its
``1 / process_count`` share of every global batch (``jaxdl.data.batches(..., shard=(i, n))``) and
``jax.make_array_from_process_local_data`` assembles the global array. Host-side agreement
between processes goes through :func:`broadcast_from_primary` (process 0's values everywhere:
run-folder decisions, a restored checkpoint) and :func:`process_sum` (per-process evaluation sums
added in one fixed order, so every process holds the same figures).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdl.errors import ConfigError

__all__ = ["DATA_AXIS", "PARALLEL_MODES", "DataParallel", "make_data_parallel", "pad_batch",
           "initialize_distributed", "distributed_settings", "is_primary_process", "broadcast_from_primary",
           "broadcast_json", "process_sum"]

DATA_AXIS = "data"
PARALLEL_MODES = ("none", "jit", "pmap")


def pad_batch(batch: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
    """Pad ``batch`` (host arrays, first axis N) with zeros to a multiple of ``multiple`` and add
    ``"mask"`` (<f32>[N'], 1 for real examples) when padding was needed or a mask was present."""
    n = len(batch["label"])
    pad = (-n) % multiple
    if pad == 0:
        return batch
    out = {k: np.concatenate([np.asarray(v), np.zeros((pad, *np.shape(v)[1:]), np.asarray(v).dtype)])
           for k, v in batch.items() if k != "mask"}
    mask = np.asarray(batch.get("mask", np.ones(n, np.float32)), np.float32)
    out["mask"] = np.concatenate([mask, np.zeros(pad, np.float32)])
    return out


def _pmap_pad(batch: dict[str, np.ndarray], devices: int) -> dict[str, np.ndarray]:
    """Pad for pmap so that the real examples are spread as evenly as possible over devices:
    with B = q * D + r, r devices hold q + 1 real examples and D - r hold q (sizes differ by one
    at most, never a device of padding only when B >= D)."""
    n = len(batch["label"])
    if n % devices == 0:
        return batch
    per = -(-n // devices)
    sizes = [n // devices + (1 if d < n % devices else 0) for d in range(devices)]
    starts = np.cumsum([0] + sizes[:-1])
    items = {k: np.asarray(v) for k, v in batch.items() if k != "mask"}
    items["mask"] = np.asarray(batch.get("mask", np.ones(n, np.float32)), np.float32)
    out = {}
    for k, v in items.items():
        slab = np.zeros((devices * per, *v.shape[1:]), v.dtype)
        for d, (s, size) in enumerate(zip(starts, sizes)):
            slab[d * per:d * per + size] = v[s:s + size]
        out[k] = slab
    return out


def _first_replica(x: Any, stacked: bool) -> np.ndarray:
    """Host copy of one replica; ``stacked``: x carries pmap's leading device axis."""
    if not isinstance(x, jax.Array):
        return np.asarray(x)[0] if stacked else np.asarray(x)
    shard = np.asarray(x.addressable_shards[0].data)
    return shard.reshape(x.shape[1:]) if stacked else shard


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """How the one trainer places state and batches and compiles its step.

    Build with :func:`make_data_parallel`. Methods: ``compile_train_step``, ``put_state``,
    ``put_batch``, ``host_state`` (the state as one host copy: evaluation, checkpoints),
    ``host_metrics``, ``step_of``.
    """

    mode: str
    devices: tuple[Any, ...]
    mesh: Mesh | None = None

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def local_devices(self) -> tuple[Any, ...]:
        return tuple(d for d in self.devices if d.process_index == jax.process_index())

    @property
    def model_overrides(self) -> dict[str, Any]:
        """Fields the model needs: pmap BatchNorm must know the axis to sum its statistics over."""
        return {"bn_axis_name": DATA_AXIS} if self.mode == "pmap" else {}

    def _stacked_sharding(self) -> NamedSharding:
        """pmap's inputs: a leading axis of one entry per local device."""
        return NamedSharding(Mesh(np.array(self.local_devices), (DATA_AXIS,)), P(DATA_AXIS))

    def compile_train_step(self, step: Callable[..., Any], donate: bool = True) -> Callable[..., Any]:
        """``step(state, batch, axis_name=None) -> (state, metrics)`` compiled for this mode."""
        donate_argnums = (0,) if donate else ()
        if self.mode == "pmap":
            return jax.pmap(functools.partial(step, axis_name=DATA_AXIS), axis_name=DATA_AXIS,
                            devices=self.devices, donate_argnums=donate_argnums)
        if self.mode == "jit":
            replicated = NamedSharding(self.mesh, P())
            return jax.jit(step, in_shardings=(replicated, NamedSharding(self.mesh, P(DATA_AXIS))),
                           out_shardings=(replicated, replicated), donate_argnums=donate_argnums)
        return jax.jit(step, donate_argnums=donate_argnums)

    def put_state(self, state: Any) -> Any:
        """Place a (host or single-device) state for training."""
        if self.mode == "pmap":
            stacked = jax.tree_util.tree_map(
                lambda x: np.broadcast_to(np.asarray(x), (len(self.local_devices), *np.shape(x))), jax.device_get(state))
            return jax.device_put(stacked, self._stacked_sharding())
        if self.mode == "jit":
            replicated = NamedSharding(self.mesh, P())
            host = jax.device_get(state)
            return jax.tree_util.tree_map(
                lambda x: jax.make_array_from_callback(np.shape(x), replicated, lambda idx, x=x: np.asarray(x)[idx]),
                host)
        return jax.device_put(state)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """This process's share of a global batch (host arrays) -> the step's input."""
        local = len(self.local_devices)
        if self.mode == "pmap":
            batch = _pmap_pad(batch, local)
            shards = {k: np.asarray(v).reshape(local, -1, *np.shape(v)[1:]) for k, v in batch.items()}
            return jax.device_put(shards, self._stacked_sharding())
        if self.mode == "jit":
            batch = _pmap_pad(batch, local)  # even spread; the mask makes the layout irrelevant
            sharding = NamedSharding(self.mesh, P(DATA_AXIS))
            return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}
        return jax.device_put(batch)

    def host_state(self, state: Any) -> Any:
        """One copy of the state as host numpy arrays (replicas are identical)."""
        if self.mode in ("pmap", "jit"):
            return jax.tree_util.tree_map(lambda x: _first_replica(x, self.mode == "pmap"), state)
        return jax.device_get(state)

    def host_metrics(self, metrics: Any) -> Any:
        """Step metrics on the host (pmap returns one identical copy per device)."""
        if self.mode in ("pmap", "jit"):
            return jax.tree_util.tree_map(lambda x: _first_replica(x, self.mode == "pmap"), metrics)
        return jax.device_get(metrics)

    def step_of(self, state: Any) -> int:
        return int(_first_replica(state.step, self.mode == "pmap"))


def make_data_parallel(mode: str = "none", num_devices: int | None = None) -> DataParallel:
    """The :class:`DataParallel` for ``mode`` over the first ``num_devices`` devices (default all).

    Multi-host: ``num_devices`` counts devices over all processes and must be all of them
    (every process takes part in every step).
    """
    if mode not in PARALLEL_MODES:
        raise ConfigError(f"parallel mode must be one of {', '.join(PARALLEL_MODES)}; got {mode!r}")
    available = jax.devices()
    if num_devices is None:
        num_devices = len(available) if mode != "none" else 1
    if int(num_devices) != num_devices or num_devices < 1:
        raise ConfigError(f"--devices must be a positive whole number, got {num_devices!r}")
    if mode == "none" and num_devices != 1:
        raise ConfigError(f"--devices {num_devices} needs --parallel jit or pmap (none runs on one device)")
    if num_devices > len(available):
        raise ConfigError(f"--devices {num_devices} asks for more devices than the {len(available)} "
                          f"{available[0].platform} device(s) present; on CPU fake devices come from "
                          f"XLA_FLAGS=--xla_force_host_platform_device_count=N set before jax starts")
    if mode == "none":
        return DataParallel("none", (available[0],))
    if jax.process_count() > 1 and num_devices != len(available):
        raise ConfigError(f"multi-host runs use every device of every process ({len(available)}); "
                          f"drop --devices or pass --devices {len(available)}")
    devices = tuple(available[:num_devices])
    mesh = Mesh(np.array(devices), (DATA_AXIS,)) if mode == "jit" else None
    return DataParallel(mode, devices, mesh)


def distributed_settings(coordinator: str | None = None, num_processes: int | None = None,
                         process_id: int | None = None) -> dict[str, Any] | None:
    """The ``jax.distributed.initialize`` arguments from flags, else from the environment
    (``JAXDL_COORDINATOR`` host:port, ``JAXDL_NUM_PROCESSES``, ``JAXDL_PROCESS_ID``); None when
    neither names a coordinator (a single-process run)."""
    env = os.environ
    coordinator = coordinator or env.get("JAXDL_COORDINATOR") or None
    if coordinator is None:
        return None

    def number(value, name, flag):
        value = value if value is not None else env.get(name)
        if value is None:
            raise ConfigError(f"a multi-host run needs {flag} (or {name}) besides the coordinator address")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{flag} must be a whole number, got {value!r}") from None

    n = number(num_processes, "JAXDL_NUM_PROCESSES", "--num-processes")
    i = number(process_id, "JAXDL_PROCESS_ID", "--process-id")
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"process id must be in [0, {n}) for {n} processes, got {i}")
    if ":" not in coordinator:
        raise ConfigError(f"the coordinator address must be host:port, got {coordinator!r}")
    return {"coordinator_address": coordinator, "num_processes": n, "process_id": i}


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, *, cpu_collectives: str | None = "gloo") -> bool:
    """Join a multi-process run (``jax.distributed.initialize``) when a coordinator is given.

    Must run before any other JAX call. On CPU, cross-process collectives need an
    implementation (``gloo``). Returns True when a multi-process run was joined.
    """
    settings = distributed_settings(coordinator, num_processes, process_id)
    if settings is None:
        return False
    if cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(**settings)
    return True


def is_primary_process() -> bool:
    """True on process 0, the one that writes the run folder and prints (always True on one process)."""
    return jax.process_index() == 0


def broadcast_from_primary(tree: Any) -> Any:
    """Process 0's values of ``tree`` (numeric arrays, the same shapes and dtypes on every
    process) as host numpy arrays on every process; identity (as numpy) on one process."""
    from jax.experimental import multihost_utils

    host = jax.tree_util.tree_map(np.asarray, jax.device_get(tree))
    if jax.process_count() == 1:
        return host
    return jax.tree_util.tree_map(np.asarray, multihost_utils.broadcast_one_to_all(host))


def broadcast_json(value: Any) -> Any:
    """Process 0's JSON-serialisable ``value`` on every process (the others pass anything, e.g. None).

    Sent as UTF-8 bytes: first the length, then the bytes padded to it.
    """
    import json

    if jax.process_count() == 1:
        return value
    payload = np.frombuffer(json.dumps(value).encode(), np.uint8) if is_primary_process() else np.zeros(0, np.uint8)
    length = int(broadcast_from_primary(np.array(len(payload), np.int32)))
    padded = np.zeros(length, np.int32)  # int32: the broadcast adds the processes' arrays
    padded[:len(payload)] = payload
    return json.loads(bytes(broadcast_from_primary(padded).astype(np.uint8)).decode())


def process_sum(tree: Any) -> Any:
    """Sum a pytree of host-local arrays over processes; every process gets the same result
    (the per-process arrays are gathered and added in process order)."""
    from jax.experimental import multihost_utils

    host = jax.tree_util.tree_map(np.asarray, jax.device_get(tree))
    if jax.process_count() == 1:
        return host
    gathered = multihost_utils.process_allgather(host)
    return jax.tree_util.tree_map(lambda x: np.asarray(x).sum(axis=0, dtype=np.asarray(x).dtype), gathered)
