"""IDX files: the format of MNIST and Fashion-MNIST (raw or gzip-compressed).

Layout (LeCun et al., http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): a 4-byte magic
number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes,
then the values in C order, big-endian. MNIST images are ``0x00000803`` (uint8, 3 dims:
N, 28, 28) and labels ``0x00000801`` (uint8, 1 dim: N).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from jaxdl.errors import CorruptFileError, DataError, DatasetNotFoundError

__all__ = ["read_idx", "IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC"]

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

# Type byte -> big-endian numpy dtype (same table as the format description).
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip (by magic bytes, not by name)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:
            raise CorruptFileError(f"{path}: the gzip stream is corrupt or truncated ({e}); "
                                   f"download the file again") from None
    return data


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or ``.gz``) into a native-endian numpy array.

    Args:
      path: the file, e.g. ``train-images-idx3-ubyte.gz``.
      expected_magic: if given (``IDX_IMAGES_MAGIC`` or ``IDX_LABELS_MAGIC``), a file with
        another magic number is rejected.

    Returns:
      ``<u8>[N, rows, cols]`` for images, ``<u8>[N]`` for labels (other IDX types map to
      their numpy dtype).

    Raises:
      CorruptFileError: bad magic number, or the data is shorter/longer than the header says
        (the message gives expected vs found byte counts).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise CorruptFileError(f"{path}: only {len(data)} bytes, too short for an IDX header "
                               f"(4-byte magic number + dimensions)")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    magic = struct.unpack(">I", data[:4])[0]
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise CorruptFileError(f"{path}: bad IDX magic number 0x{magic:08x}; an IDX file starts with "
                               f"0x00000803 (images) or 0x00000801 (labels). Is this really an MNIST-format file?")
    if expected_magic is not None and magic != expected_magic:
        raise CorruptFileError(f"{path}: IDX magic number is 0x{magic:08x} but 0x{expected_magic:08x} was expected "
                               f"({'images' if expected_magic == IDX_IMAGES_MAGIC else 'labels'}); "
                               f"were the images and labels files swapped?")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptFileError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, "
                               f"the file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_TYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise CorruptFileError(f"{path}: file is {what}: dimensions {tuple(dims)} need {expected} bytes of data "
                               f"after the {header}-byte header, found {found}; download the file again")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)
