"""Host-side batching: a data order that is a pure function of (seed, epoch), and device prefetch.

A resumed run that knows its (seed, epoch, batch index) sees exactly the batches the
interrupted run would have seen: ``batches(ds, B, seed=s, epoch=e, start=k)`` yields batch
k onwards of the same permutation.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator

import numpy as np

from jaxdl.data.dataset import Dataset
from jaxdl.errors import ConfigError

__all__ = ["epoch_order", "num_batches", "batches", "stratified_split_indices", "train_val_split",
           "prefetch_to_device"]


def _check_nonnegative(**values: int) -> None:
    for name, v in values.items():
        if int(v) != v or v < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """``<i64>[n]``: the permutation of ``range(n)`` for this (seed, epoch); same inputs, same output.

    Seeded by ``np.random.default_rng([seed, epoch])``, so epochs are independent streams and no
    state carries from one epoch to the next.
    """
    _check_nonnegative(n=n, seed=seed, epoch=epoch)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(n))


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Batches per epoch: ``n // batch_size``, or rounded up when the last partial batch is kept."""
    _check_nonnegative(n=n)
    if int(batch_size) != batch_size or batch_size <= 0:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(dataset: Dataset, batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True,
            drop_last: bool = True, start: int = 0, shard: tuple[int, int] = (0, 1)
            ) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{"image": <u8>[B, H, W, C], "label": <i32>[B]}`` for one epoch, from batch ``start`` on.

    Args:
      dataset: the examples.
      batch_size: B. With ``drop_last`` every batch has exactly B examples (fixed shapes, one
        compilation); otherwise the last may be smaller (evaluation).
      seed, epoch: select the order (see :func:`epoch_order`); ignored when ``shuffle=False``.
      start: index of the first batch to yield, to resume mid-epoch.
      shard: ``(process_index, process_count)``: yield only this process's contiguous
        ``B / process_count`` slice of every global batch (multi-host data parallelism; the
        global batches, and so the run, do not depend on how many processes read them).
    """
    index, count = (int(shard[0]), int(shard[1]))
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
    if batch_size % count:
        raise ConfigError(f"the global batch size {batch_size} must be divisible by the {count} processes "
                          f"that read it; use a batch size that is a multiple of {count}")
    n = len(dataset)
    total = num_batches(n, batch_size, drop_last)
    _check_nonnegative(start=start)
    if n > 0 and drop_last and total == 0:
        raise ConfigError(f"batch_size {batch_size} is larger than the {n} examples of {dataset.name or 'the data'}"
                          f" and drop_last=True would yield nothing; lower the batch size")
    order = epoch_order(n, seed, epoch) if shuffle else np.arange(n)
    for b in range(int(start), total):
        idx = order[b * batch_size:(b + 1) * batch_size]
        if count > 1:
            per = len(idx) // count if drop_last else -(-len(idx) // count)
            idx = idx[index * per:(index + 1) * per]
        yield {"image": dataset.images[idx], "label": dataset.labels[idx]}


def stratified_split_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, held_out)`` sorted index arrays; each class contributes ``round(fraction * count)``.

    Deterministic: a class's examples are permuted with ``default_rng([seed, class])``, so the
    split of one class does not depend on the others.
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise ConfigError(f"the held-out fraction must be in [0, 1), got {fraction!r}")
    labels = np.asarray(labels)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(round(float(fraction) * members.size))
        held.append(np.random.default_rng([int(seed), int(c)]).permutation(members)[:k])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    mask = np.ones(labels.shape[0], bool)
    mask[held_out] = False
    return np.flatnonzero(mask), held_out


def train_val_split(dataset: Dataset, val_fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Stratified, deterministic ``(train, val)`` split: about ``val_fraction`` of each class to val."""
    keep, held = stratified_split_indices(dataset.labels, val_fraction, seed)
    base = dataset.name or "data"
    return dataset.subset(keep, name=f"{base}[train]"), dataset.subset(held, name=f"{base}[val]")


_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch_to_device(iterator: Iterable[Any], size: int = 2, sharding: Any = None,
                       put: Any = None) -> Iterator[Any]:
    """Move batches to the device with ``jax.device_put`` in a background thread, ``size`` ahead.

    Host work (indexing, decoding) and the transfer overlap the device's compute on the
    previous batch. An exception raised by ``iterator`` is re-raised here, in the consumer.
    Stopping early (``break``, ``close()``) stops the thread.

    Args:
      iterator: yields pytrees of host arrays (e.g. :func:`batches`).
      size: how many batches to hold on device ahead of the consumer (>= 1).
      sharding: passed to ``jax.device_put`` (e.g. a ``NamedSharding`` splitting the batch
        axis over devices); None puts on the default device.
      put: ``put(batch) -> device batch`` used instead of ``jax.device_put`` (data-parallel
        placement: padding, per-process assembly; ``jaxdl.train.parallel.DataParallel.put_batch``).
    """
    import jax  # host-only module otherwise; imported here so numpy-only use stays light

    if int(size) != size or size < 1:
        raise ConfigError(f"prefetch size must be a positive integer, got {size!r}")
    buffer: queue.Queue = queue.Queue(maxsize=int(size))
    stop = threading.Event()

    def put_item(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for batch in iterator:
                if not put_item(jax.device_put(batch, sharding) if put is None else put(batch)):
                    return
            put_item(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put_item(_Failure(e))

    thread = threading.Thread(target=produce, name="jaxdl-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)
