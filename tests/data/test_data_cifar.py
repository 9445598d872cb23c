"""CIFAR python-batch reader on generated pickles: folders and .tar.gz, CIFAR-10 and CIFAR-100."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from jaxdl import data
from jaxdl.errors import ConfigError, CorruptFileError, DataError


def _check(ds, images, labels):
    assert ds.images.dtype == np.uint8 and ds.images.shape == (len(images), 32, 32, 3)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)


def test_row_layout_is_channel_planes(tmp_path, fmt):
    # One image whose row holds 0..1023 (mod 256) in the red plane, 1 in green, 2 in blue.
    row = np.concatenate([np.arange(1024) % 256, np.full(1024, 1), np.full(1024, 2)]).astype(np.uint8)
    files = {"test_batch": {b"data": row[None], b"labels": [3]},
             "batches.meta": {b"label_names": [b"c%d" % i for i in range(10)]}}
    ds = data.read_cifar(fmt.write_cifar_folder(tmp_path / "c", files), "test")
    assert ds.images[0, 0, 5, 0] == 5 and ds.images[0, 1, 0, 0] == 32  # red[r, c] = r * 32 + c
    assert (ds.images[0, ..., 1] == 1).all() and (ds.images[0, ..., 2] == 2).all()


@pytest.mark.parametrize("container", ["folder", "nested", "tar"])
def test_cifar10(tmp_path, fmt, container):
    files, expected = fmt.cifar10_files(n=3)
    if container == "folder":
        source = fmt.write_cifar_folder(tmp_path / "c", files)
    elif container == "nested":
        fmt.write_cifar_folder(tmp_path / "c" / "cifar-10-batches-py", files)
        source = tmp_path / "c"
    else:
        source = fmt.write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
    for split in ("train", "test"):
        ds = data.read_cifar(source, split)
        _check(ds, *expected[split])
        assert ds.classes == tuple(f"class{i}" for i in range(10))
    assert len(data.read_cifar(source, "train")) == 15  # 5 batches of 3


@pytest.mark.parametrize("coarse", [False, True])
def test_cifar100_tar(tmp_path, fmt, coarse):
    files, expected = fmt.cifar100_files(n=4)
    tar = fmt.write_cifar_tar(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", files)
    for split in ("train", "test"):
        ds = data.read_cifar(tar, split, coarse=coarse)
        x, fine, coarse_labels = expected[split]
        _check(ds, x, coarse_labels if coarse else fine)
        assert ds.num_classes == (20 if coarse else 100)
        assert ds.classes[1] == ("coarse1" if coarse else "fine1")


def test_load_finds_folder_and_archive(tmp_path, roots, fmt):
    files10, expected10 = fmt.cifar10_files(n=2)
    fmt.write_cifar_folder(tmp_path / "cifar-10-batches-py", files10)
    _check(data.load("cifar10", "test", data_dir=tmp_path), *expected10["test"])
    files100, expected100 = fmt.cifar100_files(n=2)
    fmt.write_cifar_tar(tmp_path / "cifar100" / "cifar-100-python.tar.gz", "cifar-100-python", files100)
    ds = data.load("cifar100", "train", data_dir=tmp_path, coarse=True)
    _check(ds, expected100["train"][0], expected100["train"][2])


def test_wrong_archive_under_cifar10_name(tmp_path, roots, fmt):
    files100, _ = fmt.cifar100_files(n=2)
    fmt.write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-100-python", files100)
    with pytest.raises(CorruptFileError, match="not cifar10"):
        data.load("cifar10", data_dir=tmp_path)


def test_modern_pickles_with_str_keys(tmp_path, fmt):
    files, expected = fmt.cifar10_files(n=2)
    modern = {name: fmt.pickled({k.decode(): v for k, v in d.items()}, protocol=5) for name, d in files.items()}
    ds = data.read_cifar(fmt.write_cifar_folder(tmp_path / "c", modern), "train")
    _check(ds, *expected["train"])


def test_short_batch_row(tmp_path, fmt):
    files, _ = fmt.cifar10_files(n=2)
    files["data_batch_3"][b"data"] = files["data_batch_3"][b"data"][:, :3000]
    folder = fmt.write_cifar_folder(tmp_path / "c", files)
    with pytest.raises(CorruptFileError, match="3072") as e:
        data.read_cifar(folder, "train")
    assert str(folder / "data_batch_3") in str(e.value)


def test_truncated_batch_file(tmp_path, fmt):
    files, _ = fmt.cifar10_files(n=2)
    raw = fmt.pickled(files["test_batch"])
    files["test_batch"] = raw[: len(raw) // 2]
    folder = fmt.write_cifar_folder(tmp_path / "c", files)
    with pytest.raises(CorruptFileError, match="truncated or garbled") as e:
        data.read_cifar(folder, "test")
    assert str(folder / "test_batch") in str(e.value)


def test_garbled_member_in_archive_names_member(tmp_path, fmt):
    files, _ = fmt.cifar10_files(n=2)
    files["data_batch_2"] = b"this is not a pickle"
    tar = fmt.write_cifar_tar(tmp_path / "c.tar.gz", "cifar-10-batches-py", files)
    with pytest.raises(CorruptFileError) as e:
        data.read_cifar(tar, "train")
    assert str(tar) in str(e.value) and "cifar-10-batches-py/data_batch_2" in str(e.value)


def test_label_count_mismatch(tmp_path, fmt):
    files, _ = fmt.cifar10_files(n=3)
    files["test_batch"][b"labels"] = files["test_batch"][b"labels"][:2]
    with pytest.raises(CorruptFileError, match="3 images"):
        data.read_cifar(fmt.write_cifar_folder(tmp_path / "c", files), "test")


def test_truncated_archive(tmp_path, fmt):
    files, _ = fmt.cifar10_files(n=2)
    tar = fmt.write_cifar_tar(tmp_path / "c.tar.gz", "cifar-10-batches-py", files)
    raw = tar.read_bytes()
    tar.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError) as e:
        data.read_cifar(tar, "train")
    assert str(tar) in str(e.value)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.remove, (self.target,)


def test_pickle_cannot_run_code(tmp_path, fmt):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    files, _ = fmt.cifar10_files(n=1)
    files["test_batch"] = pickle.dumps({b"data": _Evil(str(victim)), b"labels": [0]}, protocol=2)
    with pytest.raises(CorruptFileError, match="refusing"):
        data.read_cifar(fmt.write_cifar_folder(tmp_path / "c", files), "test")
    assert victim.exists()


def test_missing_batch_and_wrong_options(tmp_path, fmt):
    files, _ = fmt.cifar10_files(n=1)
    del files["data_batch_4"]
    folder = fmt.write_cifar_folder(tmp_path / "c", files)
    with pytest.raises(DataError, match="data_batch_4"):
        data.read_cifar(folder, "train")
    with pytest.raises(ConfigError, match="CIFAR-100"):
        data.read_cifar(folder, "test", coarse=True)
    with pytest.raises(DataError, match="no CIFAR batches"):
        data.read_cifar(tmp_path, "test")
