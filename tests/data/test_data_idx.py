"""IDX reader on small generated MNIST-format files, raw and gzip."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from jaxdl import data
from jaxdl.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC
from jaxdl.errors import CorruptFileError


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, fmt, ext):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (3,), dtype=np.uint8)
    got_images = data.read_idx(fmt.write_idx(tmp_path / f"i{ext}", images), IDX_IMAGES_MAGIC)
    got_labels = data.read_idx(fmt.write_idx(tmp_path / f"l{ext}", labels), IDX_LABELS_MAGIC)
    assert got_images.dtype == np.uint8 and got_images.shape == (3, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_gzip_detected_by_content_not_name(tmp_path, fmt):
    labels = np.arange(7, dtype=np.uint8)
    raw = fmt.write_idx(tmp_path / "l.gz", labels).read_bytes()
    (tmp_path / "no-extension").write_bytes(raw)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "no-extension"), labels)


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_bad_magic_names_file(tmp_path, fmt, ext):
    path = fmt.write_idx(tmp_path / f"bad{ext}", np.zeros((2, 4, 4), np.uint8), magic=0x12345678)
    with pytest.raises(CorruptFileError, match="magic") as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


def test_swapped_files_rejected_by_expected_magic(tmp_path, fmt):
    path = fmt.write_idx(tmp_path / "labels", np.zeros(5, np.uint8))
    with pytest.raises(CorruptFileError, match="0x00000801") as e:
        data.read_idx(path, IDX_IMAGES_MAGIC)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_truncated_data_reports_byte_counts(tmp_path, fmt, ext):
    images = np.ones((4, 28, 28), np.uint8)
    raw = fmt.write_idx(tmp_path / "full", images).read_bytes()
    cut = raw[:-100]  # 16-byte header + 3036 of 3136 data bytes
    path = tmp_path / f"cut{ext}"
    path.write_bytes(gzip.compress(cut) if ext else cut)
    with pytest.raises(CorruptFileError, match="truncated") as e:
        data.read_idx(path)
    message = str(e.value)
    assert str(path) in message and "3136" in message and "3036" in message


def test_extra_bytes_rejected(tmp_path, fmt):
    raw = fmt.write_idx(tmp_path / "full", np.ones((2, 3), np.uint8)).read_bytes()
    (tmp_path / "long").write_bytes(raw + b"\0\0")
    with pytest.raises(CorruptFileError, match="longer"):
        data.read_idx(tmp_path / "long")


def test_truncated_gzip_stream(tmp_path, fmt):
    raw = fmt.write_idx(tmp_path / "x.gz", np.random.default_rng(0).integers(0, 256, (5, 28, 28))).read_bytes()
    (tmp_path / "cut.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match="gzip") as e:
        data.read_idx(tmp_path / "cut.gz")
    assert "cut.gz" in str(e.value)


def test_header_too_short(tmp_path):
    (tmp_path / "tiny").write_bytes(b"\0\0")
    with pytest.raises(CorruptFileError, match="too short"):
        data.read_idx(tmp_path / "tiny")
    (tmp_path / "hdr").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(CorruptFileError, match="header"):
        data.read_idx(tmp_path / "hdr")


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_generated_files(tmp_path, roots, fmt, gz):
    expected = fmt.make_idx_set(tmp_path / "d", gz=gz)
    for split in ("train", "test"):
        ds = data.load("mnist", split, data_dir=tmp_path / "d")
        images, labels = expected[split]
        assert ds.images.shape == (len(images), 28, 28, 1) and ds.images.dtype == np.uint8
        assert ds.labels.dtype == np.int32
        np.testing.assert_array_equal(ds.images[..., 0], images)
        np.testing.assert_array_equal(ds.labels, labels)
        assert ds.classes == tuple(str(i) for i in range(10))


def test_dotted_file_names_accepted(tmp_path, roots, fmt):
    x = np.zeros((2, 28, 28), np.uint8)
    fmt.write_idx(tmp_path / "train-images.idx3-ubyte", x)
    fmt.write_idx(tmp_path / "train-labels.idx1-ubyte", np.array([3, 4], np.uint8))
    np.testing.assert_array_equal(data.load("mnist", data_dir=tmp_path).labels, [3, 4])


def test_image_label_count_mismatch(tmp_path, roots, fmt):
    fmt.write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    fmt.write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(CorruptFileError, match="3 images but .* 4 labels"):
        data.load("mnist", data_dir=tmp_path)


def test_label_out_of_range(tmp_path, roots, fmt):
    fmt.write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    fmt.write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 10], np.uint8))
    with pytest.raises(CorruptFileError, match="label 10"):
        data.load("mnist", data_dir=tmp_path)
