"""Image folders and zips of images (PNG via pillow), read without extracting."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxdl import data
from jaxdl.errors import ConfigError, CorruptFileError, DataError


def _expected(per_class: dict[str, list]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    classes = tuple(sorted(per_class))
    images = [a for c in classes for a in per_class[c]]
    labels = [i for i, c in enumerate(classes) for _ in per_class[c]]
    return np.stack(images), np.asarray(labels), classes


def test_folder_reads_pixels_and_classes(tmp_path, fmt):
    written = fmt.make_image_folder(tmp_path / "pets", {"dog": 2, "cat": 3})
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("ignored")
    ds = data.read_image_folder(tmp_path / "pets")
    images, labels, classes = _expected(written)
    assert ds.classes == ("cat", "dog") == classes
    assert ds.images.shape == (5, 6, 5, 3) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)


def test_grayscale_inferred_and_overridden(tmp_path, fmt):
    fmt.make_image_folder(tmp_path / "g", {"a": 2, "b": 1}, shape=(4, 4, 1))
    assert data.read_image_folder(tmp_path / "g").image_shape == (4, 4, 1)
    rgb = data.read_image_folder(tmp_path / "g", channels=3)
    assert rgb.image_shape == (4, 4, 3)
    np.testing.assert_array_equal(rgb.images[..., 0], rgb.images[..., 2])


def test_differing_sizes_name_first_odd_file(tmp_path, fmt):
    fmt.make_image_folder(tmp_path / "f", {"a": 2, "b": 2}, shape=(6, 5, 3))
    odd = tmp_path / "f" / "b" / "001.png"
    odd.write_bytes(fmt.png_bytes(np.zeros((9, 7, 3), np.uint8)))
    with pytest.raises(DataError, match="image_size") as e:
        data.read_image_folder(tmp_path / "f")
    assert str(odd) in str(e.value)
    resized = data.read_image_folder(tmp_path / "f", image_size=(8, 8))
    assert resized.images.shape == (4, 8, 8, 3)


def test_unreadable_image_in_folder(tmp_path, fmt):
    fmt.make_image_folder(tmp_path / "f", {"a": 1, "b": 1})
    bad = tmp_path / "f" / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(CorruptFileError, match="unreadable image") as e:
        data.read_image_folder(tmp_path / "f")
    assert str(bad) in str(e.value)


def test_truncated_png(tmp_path, fmt):
    fmt.make_image_folder(tmp_path / "f", {"a": 1})
    raw = fmt.png_bytes(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    (tmp_path / "f" / "a" / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match="cut.png"):
        data.read_image_folder(tmp_path / "f")


def test_loose_images_and_empty_folder(tmp_path, fmt):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="subfolder"):
        data.read_image_folder(tmp_path / "empty")
    fmt.make_image_folder(tmp_path / "f", {"a": 1})
    (tmp_path / "f" / "stray.png").write_bytes(fmt.png_bytes(np.zeros((6, 5, 3), np.uint8)))
    with pytest.raises(DataError, match="stray.png"):
        data.read_image_folder(tmp_path / "f")


def test_load_folder_without_splits(tmp_path, fmt):
    fmt.make_image_folder(tmp_path / "f", {"a": 2, "b": 2})
    assert len(data.load(f"folder:{tmp_path / 'f'}", "train")) == 4
    with pytest.raises(DataError, match="train/ and test/"):
        data.load(f"folder:{tmp_path / 'f'}", "test")
    meta = data.info(f"folder:{tmp_path / 'f'}")
    assert meta.splits == ("train",) and meta.classes == ("a", "b") and meta.image_shape == (6, 5, 3)


def test_load_folder_with_train_and_test(tmp_path, fmt):
    fmt.make_image_folder(tmp_path / "f" / "train", {"a": 2, "b": 1, "c": 1})
    fmt.make_image_folder(tmp_path / "f" / "test", {"c": 2}, seed=1)  # test lacks a, b: labels still follow train
    train = data.load(f"folder:{tmp_path / 'f'}", "train")
    test = data.load(f"folder:{tmp_path / 'f'}", "test")
    assert train.classes == test.classes == ("a", "b", "c")
    np.testing.assert_array_equal(test.labels, [2, 2])
    assert data.info(f"folder:{tmp_path / 'f'}").splits == ("train", "test")
    fmt.make_image_folder(tmp_path / "f" / "test", {"zebra": 1})
    with pytest.raises(DataError, match="zebra"):
        data.load(f"folder:{tmp_path / 'f'}", "test")


def test_load_folder_options_checked(tmp_path, fmt):
    fmt.make_image_folder(tmp_path / "f", {"a": 1})
    with pytest.raises(ConfigError, match="image_size"):
        data.load(f"folder:{tmp_path / 'f'}", colour=True)
    with pytest.raises(ConfigError, match="channels"):
        data.load(f"folder:{tmp_path / 'f'}", channels=2)


@pytest.mark.parametrize("prefix", ["", "pets/"])
def test_zip_equals_folder(tmp_path, fmt, prefix):
    written = fmt.make_image_folder(tmp_path / "pets", {"dog": 2, "cat": 2})
    members = {f"{prefix}{cls}/{i:03d}.png": fmt.png_bytes(a) for cls, arrays in written.items()
               for i, a in enumerate(arrays)}
    members["__MACOSX/._junk.png"] = b"resource fork"
    archive = fmt.make_zip(tmp_path / "pets.zip", members)
    from_zip = data.read_zip(archive)
    from_folder = data.read_image_folder(tmp_path / "pets")
    assert from_zip.classes == from_folder.classes
    np.testing.assert_array_equal(from_zip.images, from_folder.images)
    np.testing.assert_array_equal(from_zip.labels, from_folder.labels)
    assert not any(p.suffix == ".png" for p in tmp_path.iterdir())  # nothing extracted


def test_zip_with_splits(tmp_path, fmt):
    img = fmt.png_bytes(np.zeros((3, 3, 1), np.uint8))
    archive = fmt.make_zip(tmp_path / "d.zip", {"data/train/x/1.png": img, "data/train/y/2.png": img,
                                                "data/test/y/3.png": img})
    assert data.info(f"zip:{archive}").splits == ("train", "test")
    train, test = data.load(f"zip:{archive}", "train"), data.load(f"zip:{archive}", "test")
    assert (len(train), len(test)) == (2, 1) and test.classes == ("x", "y")
    np.testing.assert_array_equal(test.labels, [1])
    single = fmt.make_zip(tmp_path / "s.zip", {"x/1.png": img, "y/2.png": img})
    with pytest.raises(DataError, match="train/ and test/"):
        data.load(f"zip:{single}", "test")


def test_unreadable_image_in_zip_names_member(tmp_path, fmt):
    img = fmt.png_bytes(np.zeros((3, 3, 3), np.uint8))
    archive = fmt.make_zip(tmp_path / "d.zip", {"a/1.png": img, "b/2.jpg": b"garbage bytes"})
    with pytest.raises(CorruptFileError) as e:
        data.read_zip(archive)
    assert str(archive) in str(e.value) and "member b/2.jpg" in str(e.value)


def test_not_a_zip(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"PK but not really")
    with pytest.raises(CorruptFileError, match="zip"):
        data.read_zip(tmp_path / "fake.zip")


def test_jpeg_and_rgba_decoded(tmp_path):
    (tmp_path / "f" / "a").mkdir(parents=True)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "f" / "a" / "1.png")
    Image.fromarray(np.full((4, 4, 3), 90, np.uint8)).save(tmp_path / "f" / "a" / "2.jpg", quality=95)
    ds = data.read_image_folder(tmp_path / "f")
    assert ds.image_shape == (4, 4, 3)
    assert (ds.images[0, ..., 0] == 200).all()
    assert abs(int(ds.images[1].mean()) - 90) <= 2  # JPEG is lossy


def test_missing_paths_are_dataset_not_found(tmp_path):
    from jaxdl.errors import DatasetNotFoundError

    for spec in (f"folder:{tmp_path / 'nope'}", f"zip:{tmp_path / 'nope.zip'}", f"csv:{tmp_path / 'nope.csv'}"):
        with pytest.raises(DatasetNotFoundError, match="nope"):
            data.load(spec)
