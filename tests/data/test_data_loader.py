"""Loader: data order as a pure function of (seed, epoch), batching, resume, split, device prefetch."""

from __future__ import annotations

import threading
import time

import jax
import numpy as np
import pytest

from jaxdl import data
from jaxdl.data import Dataset
from jaxdl.errors import ConfigError, DataError


def _toy(n=23, classes=3):
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(2, axis=1)
    labels = np.arange(n) % classes
    return Dataset(images, labels, tuple("abc"[:classes]), "toy")


def test_dataset_validation_and_helpers():
    ds = _toy()
    assert (len(ds), ds.num_classes, ds.image_shape) == (23, 3, (2, 1, 1))
    assert ds.labels.dtype == np.int32  # int64 input stored as int32
    sub = ds.subset([4, 2])
    np.testing.assert_array_equal(sub.images[:, 0, 0, 0], [4, 2])
    assert sub.classes == ds.classes
    np.testing.assert_array_equal(ds.class_counts(), [8, 8, 7])
    bad = [
        dict(images=np.zeros((2, 3, 3, 1), np.float32), labels=np.zeros(2, int)),
        dict(images=np.zeros((2, 3, 3), np.uint8), labels=np.zeros(2, int)),
        dict(images=np.zeros((2, 3, 3, 2), np.uint8), labels=np.zeros(2, int)),
        dict(images=np.zeros((2, 3, 3, 1), np.uint8), labels=np.zeros(3, int)),
        dict(images=np.zeros((2, 3, 3, 1), np.uint8), labels=np.array([0, 5])),
        dict(images=np.zeros((2, 3, 3, 1), np.uint8), labels=np.array([0.0, 1.0])),
    ]
    for kw in bad:
        with pytest.raises(DataError):
            Dataset(classes=("a", "b"), **kw)
    with pytest.raises(DataError, match="out of range"):
        ds.subset([100])


def test_epoch_order_is_pure():
    a = data.epoch_order(1000, seed=3, epoch=5)
    np.testing.assert_array_equal(a, data.epoch_order(1000, seed=3, epoch=5))
    np.testing.assert_array_equal(np.sort(a), np.arange(1000))
    assert not np.array_equal(a, data.epoch_order(1000, seed=3, epoch=6))
    assert not np.array_equal(a, data.epoch_order(1000, seed=4, epoch=5))
    with pytest.raises(ConfigError):
        data.epoch_order(10, seed=-1, epoch=0)


def test_num_batches():
    assert data.num_batches(23, 5, drop_last=True) == 4
    assert data.num_batches(23, 5, drop_last=False) == 5
    assert data.num_batches(20, 5, drop_last=False) == 4
    with pytest.raises(ConfigError):
        data.num_batches(10, 0)


def test_every_example_once_per_epoch():
    ds = _toy()
    seen = [b["image"][:, 0, 0, 0] for b in data.batches(ds, 5, seed=1, epoch=2, drop_last=False)]
    assert [len(s) for s in seen] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(23))
    full = list(data.batches(ds, 5, seed=1, epoch=2))
    assert len(full) == 4 and all(b["image"].shape == (5, 2, 1, 1) for b in full)
    assert all(b["image"].dtype == np.uint8 and b["label"].dtype == np.int32 for b in full)
    first = full[0]
    np.testing.assert_array_equal(first["label"], first["image"][:, 0, 0, 0] % 3)  # labels travel with images


def test_order_follows_seed_and_epoch():
    ds = _toy()
    order = lambda **kw: np.concatenate([b["image"][:, 0, 0, 0] for b in data.batches(ds, 4, **kw)])
    np.testing.assert_array_equal(order(seed=0, epoch=1), order(seed=0, epoch=1))
    assert not np.array_equal(order(seed=0, epoch=1), order(seed=0, epoch=2))
    np.testing.assert_array_equal(order(shuffle=False), np.arange(20))


def test_start_skips_exactly():
    ds = _toy()
    full = list(data.batches(ds, 4, seed=7, epoch=3))
    resumed = list(data.batches(ds, 4, seed=7, epoch=3, start=2))
    assert len(resumed) == len(full) - 2
    for a, b in zip(full[2:], resumed):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert list(data.batches(ds, 4, start=99)) == []


def test_batch_larger_than_data():
    with pytest.raises(ConfigError, match="batch_size 50"):
        list(data.batches(_toy(), 50))
    assert len(list(data.batches(_toy(), 50, drop_last=False))) == 1


def test_train_val_split_stratified_and_deterministic():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    ds = Dataset(np.zeros((200, 1, 1, 1), np.uint8), labels, tuple("abcd"), "s")
    train, val = data.train_val_split(ds, 0.1, seed=0)
    np.testing.assert_array_equal(val.class_counts(), [10, 5, 3, 2])
    np.testing.assert_array_equal(train.class_counts(), [90, 45, 27, 18])
    ds_ids = Dataset(np.arange(200, dtype=np.uint8).reshape(200, 1, 1, 1), labels, tuple("abcd"))
    tr, va = data.train_val_split(ds_ids, 0.1, seed=0)
    ids_tr, ids_va = tr.images.ravel().tolist(), va.images.ravel().tolist()
    assert sorted(ids_tr + ids_va) == list(range(200)) and not set(ids_tr) & set(ids_va)
    np.testing.assert_array_equal(va.images, data.train_val_split(ds_ids, 0.1, seed=0)[1].images)
    assert not np.array_equal(va.images, data.train_val_split(ds_ids, 0.1, seed=1)[1].images)
    with pytest.raises(ConfigError):
        data.train_val_split(ds, 1.0)


def test_prefetch_to_device_moves_and_keeps_order():
    ds = _toy()
    host = list(data.batches(ds, 4, seed=0, epoch=0))
    moved = list(data.prefetch_to_device(data.batches(ds, 4, seed=0, epoch=0), size=2))
    assert len(moved) == len(host)
    for h, d in zip(host, moved):
        assert isinstance(d["image"], jax.Array) and isinstance(d["label"], jax.Array)
        np.testing.assert_array_equal(np.asarray(d["image"]), h["image"])


def test_prefetch_propagates_producer_errors():
    def broken():
        yield {"x": np.zeros(2)}
        raise ValueError("decoder failed on batch 2")

    it = data.prefetch_to_device(broken())
    assert next(it)["x"].shape == (2,)
    with pytest.raises(ValueError, match="decoder failed"):
        next(it)


def test_prefetch_overlaps_and_stops_on_early_exit():
    produced = []

    def slow():
        for i in range(1000):
            produced.append(i)
            yield {"x": np.full(3, i)}

    it = data.prefetch_to_device(slow(), size=2)
    assert int(next(it)["x"][0]) == 0
    time.sleep(0.3)  # the producer runs ahead by at most `size` (+1 in hand) while we wait
    assert 2 <= len(produced) <= 5
    it.close()
    time.sleep(0.3)
    assert len(produced) <= 6
    assert not any(t.name == "jaxdl-prefetch" and t.is_alive() for t in threading.enumerate())
