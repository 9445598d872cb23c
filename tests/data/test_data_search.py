"""Where registered data sets are searched, what a missing one says, names, options and info()."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxdl import data
from jaxdl.data import search
from jaxdl.errors import ConfigError, DatasetNotFoundError


def _labels_marker(fmt, folder, value, name_dir="mnist"):
    """An MNIST train split in folder/name_dir whose labels are all ``value`` (tells which copy was read)."""
    d = folder / name_dir if name_dir else folder
    fmt.write_idx(d / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    fmt.write_idx(d / "train-labels-idx1-ubyte.gz", np.full(2, value, np.uint8))


def _read_marker(**kw) -> int:
    return int(data.load("mnist", "train", **kw).labels[0])


def test_search_order(roots, fmt, monkeypatch):
    _labels_marker(fmt, roots.data_dir, 1)
    _labels_marker(fmt, roots.env, 2)
    _labels_marker(fmt, roots.cache, 3)
    _labels_marker(fmt, roots.system, 4)
    monkeypatch.setenv(search.ENV_VAR, str(roots.env))
    assert _read_marker(data_dir=roots.data_dir) == 1
    assert _read_marker() == 2
    monkeypatch.delenv(search.ENV_VAR)
    assert _read_marker() == 3
    monkeypatch.setenv("XDG_CACHE_HOME", str(roots.system / "nowhere"))
    assert _read_marker() == 4


def test_env_holds_several_folders(roots, fmt, monkeypatch, tmp_path):
    _labels_marker(fmt, tmp_path / "second", 7)
    monkeypatch.setenv(search.ENV_VAR, os.pathsep.join([str(tmp_path / "first"), str(tmp_path / "second")]))
    assert _read_marker() == 7


@pytest.mark.parametrize("sub", ["fashion_mnist", "fashion-mnist", "FashionMNIST/raw", ""])
def test_folder_name_variants(roots, fmt, sub):
    d = roots.data_dir / sub if sub else roots.data_dir
    fmt.write_idx(d / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    fmt.write_idx(d / "t10k-labels-idx1-ubyte.gz", np.array([9, 0, 1], np.uint8))
    ds = data.load("fashion_mnist", "test", data_dir=roots.data_dir)
    np.testing.assert_array_equal(ds.labels, [9, 0, 1])
    assert ds.classes[9] == "Ankle boot"


def test_a_split_is_found_where_both_its_files_are(roots, fmt):
    # Only the labels in data_dir: that folder is skipped, the complete pair in the cache is used.
    fmt.write_idx(roots.data_dir / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    _labels_marker(fmt, roots.cache, 5)
    assert _read_marker(data_dir=roots.data_dir) == 5


def test_missing_dataset_says_where_and_how(roots, monkeypatch):
    monkeypatch.setenv(search.ENV_VAR, str(roots.env))
    with pytest.raises(DatasetNotFoundError) as e:
        data.load("fashion_mnist", "train", data_dir=roots.data_dir)
    message = str(e.value)
    for folder in (roots.data_dir, roots.env, roots.cache, roots.system):
        assert str(folder) in message
    assert "train-images-idx3-ubyte" in message and "fashion-mnist/" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "jaxdl download fashion_mnist" in message
    assert isinstance(e.value, FileNotFoundError)  # catchable as the builtin too


def test_missing_cifar_mentions_download_not_apt(roots):
    with pytest.raises(DatasetNotFoundError) as e:
        data.load("cifar100", "test")
    message = str(e.value)
    assert "cifar-100-python.tar.gz" in message and "jaxdl download cifar100" in message
    assert "apt-get" not in message
    assert "not set" in message  # data_dir and $JAXDL_DATA are reported as unset


def test_unknown_name_lists_valid_names_and_specs(tmp_path):
    with pytest.raises(ConfigError) as e:
        data.load("fashion-mnistt")
    message = str(e.value)
    assert all(n in message for n in data.available())
    assert "folder:PATH" in message and "zip:PATH" in message and "csv:PATH" in message
    assert "fashion_mnist" in message
    (tmp_path / "imgs").mkdir()
    with pytest.raises(ConfigError, match="folder:"):
        data.load(str(tmp_path / "imgs"))


def test_bad_split_and_option():
    with pytest.raises(ConfigError, match="train_val_split"):
        data.load("digits", "validation")
    with pytest.raises(ConfigError, match="coarse"):
        data.load("cifar100", coarse=True, fine=True)
    with pytest.raises(ConfigError, match="none"):
        data.load("digits", image_size=(8, 8))
    with pytest.raises(ConfigError, match="give a path"):
        data.load("folder:")


def test_available_and_info_without_files(roots):
    assert data.available() == ["digits", "mnist", "fashion_mnist", "cifar10", "cifar100"]
    expected = {"digits": (10, (8, 8, 1)), "mnist": (10, (28, 28, 1)), "fashion_mnist": (10, (28, 28, 1)),
                "cifar10": (10, (32, 32, 3)), "cifar100": (100, (32, 32, 3))}
    for name, (k, shape) in expected.items():
        meta = data.info(name)  # roots are empty: info reads no files
        assert (meta.num_classes, meta.image_shape, len(meta.classes)) == (k, shape, k)
        assert meta.description and meta.splits == ("train", "test")
    assert data.info("cifar100", coarse=True).num_classes == 20
    assert data.info("cifar10").classes[0] == "airplane"
    assert data.info("digits").num_examples == {"train": 1438, "test": 359}


def test_locate(roots, fmt):
    _labels_marker(fmt, roots.cache, 0)
    files = data.locate("mnist")
    assert [f.name for f in files] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert data.locate("digits") == []
