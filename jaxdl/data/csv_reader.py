"""Images in a CSV file (read with pandas), in one of two layouts.

Pixel columns (the Kaggle "mnist_train.csv" layout)::

    label,pixel0,pixel1,...,pixel783
    5,0,0,...,0

one row per image, ``H*W*C`` integer columns 0..255 in row-major ``[H, W, C]`` order (the
order of ``image.reshape(-1)``); every column except the label column is a pixel.

Path + label::

    path,label
    cats/001.png,cat

image paths relative to the CSV's folder (or absolute), decoded like an image folder.

Labels are integers (classes are then ``"0".."max"``) or names (classes are the sorted
distinct names).
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from jaxdl.data.dataset import Dataset
from jaxdl.data.images import _check_channels, _check_size, decode_image
from jaxdl.errors import ConfigError, CorruptFileError, DataError, DatasetNotFoundError

__all__ = ["read_csv"]

_PATH_COLUMNS = ("path", "file", "filename", "image", "image_path")
_CHUNK_ROWS = 8192  # keeps the int64 frame pandas builds small (8192 x 785 x 8 B = 51 MB for MNIST)


def _line(index: int) -> int:
    """1-based file line of data row ``index`` (line 1 is the header; blank lines are kept as rows)."""
    return int(index) + 2


def _check_first_row(path: Path, num_columns: int) -> None:
    """A first data row longer than the header makes pandas silently take column 1 as an index; refuse it."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for number, row in enumerate(itertools.islice(csv.reader(f), 64), start=1):
            if number > 1 and row:
                if len(row) != num_columns:
                    raise CorruptFileError(f"{path}, line {number}: row has {len(row)} fields but the header has "
                                           f"{num_columns}; every row needs one value per header column")
                return


def _infer_shape(num_pixels: int, path: Path) -> tuple[int, int, int]:
    side = math.isqrt(num_pixels)
    if side * side == num_pixels:
        return side, side, 1
    if num_pixels % 3 == 0:
        side = math.isqrt(num_pixels // 3)
        if 3 * side * side == num_pixels:
            return side, side, 3
    raise DataError(f"{path}: cannot infer the image shape from {num_pixels} pixel columns (neither a square "
                    f"grayscale nor a square RGB image); pass image_shape=(H, W) or (H, W, C)")


def _normalize_shape(image_shape: Sequence[int], path: Path) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in image_shape)
    if len(shape) == 2:
        shape += (1,)
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) <= 0:
        raise ConfigError(f"image_shape must be (H, W) or (H, W, C) with C 1 or 3, got {tuple(image_shape)!r}")
    return shape


def _first_bad(mask: np.ndarray, index: np.ndarray) -> tuple[int, int]:
    """(row index label, column position) of the first True in a [rows, cols] mask."""
    r, c = np.argwhere(mask)[0]
    return int(index[r]), int(c)


def _pixels(chunk: pd.DataFrame, columns: list[str], path: Path) -> np.ndarray:
    """Validated ``<u8>[rows, P]`` from the pixel columns of one chunk."""
    frame = chunk[columns]
    index = chunk.index.to_numpy()
    if not all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes):
        coerced = frame.apply(pd.to_numeric, errors="coerce")
        bad = (coerced.isna() & frame.notna()).to_numpy()
        if bad.any():
            row, col = _first_bad(bad, index)
            raise CorruptFileError(f"{path}, line {_line(row)}: pixel column {columns[col]!r} holds "
                                   f"{frame.iat[int(np.argwhere(bad)[0][0]), col]!r}, not a number; pixels must "
                                   f"be integers 0..255")
        frame = coerced
    values = frame.to_numpy(dtype=np.float64)
    missing = np.isnan(values)
    if missing.any():
        row, col = _first_bad(missing, index)
        raise CorruptFileError(f"{path}, line {_line(row)}: row has no value for pixel column {columns[col]!r}; "
                               f"every row needs {len(columns)} pixel values plus the label (a short or ragged "
                               f"row)")
    bad = (values < 0) | (values > 255) | (values != np.round(values))
    if bad.any():
        row, col = _first_bad(bad, index)
        raise CorruptFileError(f"{path}, line {_line(row)}: pixel column {columns[col]!r} is "
                               f"{values[np.argwhere(bad)[0][0], col]:g}; pixels must be integers 0..255")
    return values.astype(np.uint8)


def _labels(raw: list[pd.Series], label_column: str, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    series = pd.concat(raw) if raw else pd.Series([], dtype=np.int64)
    if series.isna().any():
        row = int(series.index[series.isna().to_numpy()][0])
        raise CorruptFileError(f"{path}, line {_line(row)}: the {label_column!r} column is empty")
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=np.float64)
        bad = (values < 0) | (values != np.round(values))
        if bad.any():
            row = int(series.index[bad][0])
            raise CorruptFileError(f"{path}, line {_line(row)}: label {values[bad][0]:g} is not a class index "
                                   f"(a non-negative integer) or a class name")
        labels = values.astype(np.int32)
        return labels, tuple(str(i) for i in range(int(labels.max(initial=0)) + 1))
    names = series.astype(str).str.strip()
    classes = tuple(sorted(names.unique()))
    index = {c: i for i, c in enumerate(classes)}
    return names.map(index).to_numpy(dtype=np.int32), classes


def read_csv(path: str | os.PathLike, label_column: str = "label", image_shape: Sequence[int] | None = None, *,
             path_column: str | None = None, image_size: Sequence[int] | None = None,
             channels: int | None = None, name: str | None = None) -> Dataset:
    """Read a CSV of pixel rows, or of image paths + labels, into a Dataset.

    Args:
      path: the ``.csv`` file.
      label_column: name of the label column.
      image_shape: pixel layout only: ``(H, W)`` or ``(H, W, C)``; None infers a square
        grayscale (784 -> 28x28x1) or square RGB (3072 -> 32x32x3) image.
      path_column: path layout: the column of image paths. None picks a column named
        path/file/filename/image/image_path when the CSV has just it and the label.
      image_size, channels: path layout only, as for :func:`jaxdl.data.read_image_folder`.

    Returns:
      Dataset ``images <u8>[N, H, W, C]``.

    Raises:
      CorruptFileError: ragged rows, non-numeric or out-of-range pixels, a wrong number of pixel
        columns, an empty label, an unreadable listed image (names the file and line).
      DataError: missing file or label column, a listed image that does not exist.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such CSV file")
    try:
        header = pd.read_csv(path, nrows=0)
    except pd.errors.EmptyDataError:
        raise CorruptFileError(f"{path}: the CSV file is empty; expected a header line such as "
                               f"'{label_column},pixel0,pixel1,...'") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise CorruptFileError(f"{path}: not a readable CSV file ({e})") from None
    columns = [str(c).strip() for c in header.columns]
    if label_column not in columns:
        shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
        raise DataError(f"{path}: no label column {label_column!r}; the header has {shown}. Pass "
                        f"label_column=<name>")
    _check_first_row(path, len(columns))
    if path_column is None:
        others = [c for c in columns if c != label_column]
        if len(others) == 1 and others[0].lower() in _PATH_COLUMNS:
            path_column = others[0]
    if path_column is not None and path_column not in columns:
        raise DataError(f"{path}: no path column {path_column!r}; the header has {', '.join(columns[:8])}")

    pixel_columns = [c for c in columns if c != label_column]
    if path_column is None:
        shape = _infer_shape(len(pixel_columns), path) if image_shape is None else _normalize_shape(image_shape, path)
        if int(np.prod(shape)) != len(pixel_columns):
            raise CorruptFileError(f"{path}, line 1: the header has {len(pixel_columns)} pixel columns but "
                                   f"image_shape {shape} needs {int(np.prod(shape))}")

    labels_raw, pixel_chunks, paths = [], [], []
    try:
        reader = pd.read_csv(path, skip_blank_lines=False, chunksize=_CHUNK_ROWS, index_col=False,
                             dtype={path_column: str} if path_column else None)
        for chunk in reader:
            chunk.columns = columns
            chunk = chunk[chunk.notna().any(axis=1)]  # blank lines (kept as NaN rows so line numbers stay right)
            if chunk.empty:
                continue
            labels_raw.append(chunk[label_column])
            if path_column is None:
                pixel_chunks.append(_pixels(chunk, pixel_columns, path))
            else:
                paths.extend(zip(chunk.index.to_numpy(), chunk[path_column]))
    except pd.errors.ParserError as e:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if found:
            expected, line, saw = found.groups()
            raise CorruptFileError(f"{path}, line {line}: row has {saw} fields but the header has {expected}; "
                                   f"every row needs one value per header column (a ragged row)") from None
        raise CorruptFileError(f"{path}: rows have differing numbers of fields ({str(e).strip()}); every row "
                               f"needs {len(columns)} comma-separated values like the header") from None
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"{path}: not a text CSV file ({e})") from None
    labels, classes = _labels(labels_raw, label_column, path)
    if not labels.size:
        raise DataError(f"{path}: the CSV has a header but no rows")

    if path_column is None:
        images = np.concatenate(pixel_chunks).reshape((-1, *shape))
    else:
        image_size, channels = _check_size(image_size), _check_channels(channels)
        arrays = []
        for row, rel in paths:
            if not isinstance(rel, str) or not rel.strip():
                raise CorruptFileError(f"{path}, line {_line(row)}: the {path_column!r} column is empty")
            image_path = Path(rel.strip()).expanduser()
            image_path = image_path if image_path.is_absolute() else path.parent / image_path
            where = f"{image_path} (listed on line {_line(row)} of {path})"
            if not image_path.is_file():
                raise DataError(f"{where}: no such image file")
            array = decode_image(image_path, where, channels=channels, image_size=image_size)
            channels = channels or array.shape[-1]
            if arrays and array.shape != arrays[0].shape:
                raise DataError(f"{where}: image is {array.shape[1]}x{array.shape[0]} but the first listed image "
                                f"is {arrays[0].shape[1]}x{arrays[0].shape[0]} (width x height); pass "
                                f"image_size=(H, W) to resize them all")
            arrays.append(array)
        images = np.stack(arrays)
    return Dataset(images, labels, classes, name or f"csv:{path}")
