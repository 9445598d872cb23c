"""CSV reader (pandas): pixel columns, path + label, and every kind of ragged or bad row."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdl import data
from jaxdl.errors import ConfigError, CorruptFileError, DataError


def _pixel_csv(path, images, labels, label_first=True):
    flat = images.reshape(len(images), -1)
    header = [f"pixel{i}" for i in range(flat.shape[1])]
    lines = [",".join(["label", *header] if label_first else [*header, "label"])]
    for row, y in zip(flat, labels):
        values = [str(v) for v in row]
        lines.append(",".join([str(y), *values] if label_first else [*values, str(y)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pixel_columns_gray_inferred(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 4, 4, 1), dtype=np.uint8)
    y = np.array([0, 3, 1, 3, 2])
    ds = data.read_csv(_pixel_csv(tmp_path / "d.csv", x, y))
    assert ds.images.dtype == np.uint8 and ds.image_shape == (4, 4, 1)
    np.testing.assert_array_equal(ds.images, x)
    np.testing.assert_array_equal(ds.labels, y)
    assert ds.classes == ("0", "1", "2", "3")


def test_pixel_columns_rgb_inferred_and_label_last(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (3, 2, 2, 3), dtype=np.uint8)  # 12 columns: not square -> RGB
    ds = data.read_csv(_pixel_csv(tmp_path / "d.csv", x, [1, 0, 1], label_first=False))
    np.testing.assert_array_equal(ds.images, x)


def test_explicit_shape_and_wrong_count(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (2, 2, 3, 1), dtype=np.uint8)  # 6 pixels: needs a shape
    path = _pixel_csv(tmp_path / "d.csv", x, [0, 1])
    with pytest.raises(DataError, match="image_shape"):
        data.read_csv(path)
    np.testing.assert_array_equal(data.read_csv(path, image_shape=(2, 3)).images, x)
    with pytest.raises(CorruptFileError, match="6 pixel columns") as e:
        data.read_csv(path, image_shape=(2, 2))
    assert str(path) in str(e.value)


def test_string_labels(tmp_path):
    (tmp_path / "d.csv").write_text("label,a,b,c,d\ncat,0,1,2,3\ndog,4,5,6,7\ncat,8,9,10,11\n")
    ds = data.read_csv(tmp_path / "d.csv")
    assert ds.classes == ("cat", "dog")
    np.testing.assert_array_equal(ds.labels, [0, 1, 0])


@pytest.mark.parametrize("text, line, pattern", [
    ("label,a,b,c,d\n1,0,0,0,0\n2,0,0,0,0,9\n", 3, "fields"),                 # too many fields
    ("label,a,b,c,d\n1,0,0,0,0,0\n2,0,0,0,0,0\n", 2, "fields"),               # every row one too long
    ("label,a,b,c,d\n1,0,0,0,0\n2,0,0\n", 3, "no value for pixel"),          # short row
    ("label,a,b,c,d\n1,0,0,0,0\n\n2,0,x,0,0\n", 4, "not a number"),          # blank line kept in numbering
    ("label,a,b,c,d\n1,0,0,0,256\n", 2, "0..255"),
    ("label,a,b,c,d\n1,0,0,0,1.5\n", 2, "0..255"),
    ("label,a,b,c,d\n,0,0,0,0\n", 2, "label' column is empty"),
    ("label,a,b,c,d\n1.5,0,0,0,0\n", 2, "not a class index"),
])
def test_bad_rows_name_file_and_line(tmp_path, text, line, pattern):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CorruptFileError, match=pattern) as e:
        data.read_csv(path)
    assert str(path) in str(e.value) and f"line {line}" in str(e.value)


def test_empty_and_headless(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CorruptFileError, match="empty"):
        data.read_csv(tmp_path / "empty.csv")
    (tmp_path / "h.csv").write_text("label,a\n")
    with pytest.raises(DataError, match="no rows"):
        data.read_csv(tmp_path / "h.csv")


def test_missing_label_column(tmp_path):
    (tmp_path / "d.csv").write_text("y,a,b,c,d\n1,0,0,0,0\n")
    with pytest.raises(DataError, match="no label column 'label'.*y, a, b"):
        data.read_csv(tmp_path / "d.csv")
    assert len(data.read_csv(tmp_path / "d.csv", label_column="y")) == 1


def test_path_and_label(tmp_path, fmt):
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 256, (5, 4, 3), dtype=np.uint8) for _ in range(3)]
    (tmp_path / "img").mkdir()
    for i, a in enumerate(arrays):
        (tmp_path / "img" / f"{i}.png").write_bytes(fmt.png_bytes(a))
    (tmp_path / "list.csv").write_text("path,label\nimg/0.png,dog\nimg/1.png,cat\nimg/2.png,dog\n")
    ds = data.read_csv(tmp_path / "list.csv")
    np.testing.assert_array_equal(ds.images, np.stack(arrays))
    assert ds.classes == ("cat", "dog")
    np.testing.assert_array_equal(ds.labels, [1, 0, 1])


def test_path_rows_missing_or_unreadable(tmp_path, fmt):
    (tmp_path / "ok.png").write_bytes(fmt.png_bytes(np.zeros((2, 2, 3), np.uint8)))
    (tmp_path / "bad.png").write_bytes(b"nope")
    (tmp_path / "a.csv").write_text("file,label\nok.png,0\nmissing.png,1\n")
    with pytest.raises(DataError, match="missing.png.*line 3"):
        data.read_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("file,label\nok.png,0\nbad.png,1\n")
    with pytest.raises(CorruptFileError) as e:
        data.read_csv(tmp_path / "b.csv")
    assert "bad.png" in str(e.value) and "line 3" in str(e.value) and "b.csv" in str(e.value)


def test_load_csv_specs(tmp_path):
    x = np.zeros((4, 2, 2, 1), np.uint8)
    _pixel_csv(tmp_path / "one.csv", x, [0, 1, 0, 1])
    assert len(data.load(f"csv:{tmp_path / 'one.csv'}")) == 4
    with pytest.raises(DataError, match="single file"):
        data.load(f"csv:{tmp_path / 'one.csv'}", "test")
    (tmp_path / "split").mkdir()
    _pixel_csv(tmp_path / "split" / "train.csv", x, [0, 1, 0, 1])
    _pixel_csv(tmp_path / "split" / "test.csv", x[:2], [1, 1])
    np.testing.assert_array_equal(data.load(f"csv:{tmp_path / 'split'}", "test").labels, [1, 1])
    with pytest.raises(ConfigError, match="label_column"):
        data.load(f"csv:{tmp_path / 'one.csv'}", labels="y")
