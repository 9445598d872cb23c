"""CIFAR-10 / CIFAR-100 in the "python version" format (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html).

Each batch is a pickled dict: ``b"data"`` ``<u8>[N, 3072]`` (per row 1024 red, 1024 green, 1024
blue values of a 32x32 image in row-major order) and ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` / ``b"coarse_labels"`` (CIFAR-100). CIFAR-10 ships ``data_batch_1`` ..
``data_batch_5`` (10,000 each) + ``test_batch`` + ``batches.meta`` (``b"label_names"``);
CIFAR-100 ships ``train`` (50,000) + ``test`` (10,000) + ``meta`` (``b"fine_label_names"``,
``b"coarse_label_names"``). Both are read from the extracted folder or straight from the
``.tar.gz`` without extracting.

The batches are pickles; they are loaded with an unpickler that only admits numpy arrays,
so a doctored file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from jaxdl.data.dataset import Dataset
from jaxdl.errors import ConfigError, CorruptFileError, DataError, DatasetNotFoundError

__all__ = ["read_cifar", "CIFAR10_CLASSES", "CIFAR100_CLASSES", "CIFAR100_SUPERCLASSES", "is_cifar_source"]

# Class names as in batches.meta / meta of the official archives (used when meta is absent
# and by `info` without touching the files).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
CIFAR100_SUPERCLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)

_CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CIFAR100_FILES = {"train": ("train",), "test": ("test",)}
_PIXELS = 32 * 32 * 3


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle may name: numpy array reconstruction and bytes decoding.

    Official batches were pickled by Python 2 with numpy 1 (``numpy.core.multiarray``); numpy 2
    moved it to ``numpy._core``, so both spellings map to the current objects.
    """
    import codecs

    core = getattr(np, "_core", None) or np.core  # numpy >= 2 / numpy 1
    table = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): codecs.encode}
    for module in ("numpy.core", "numpy._core"):
        table[(f"{module}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        table[(f"{module}.multiarray", "scalar")] = core.multiarray.scalar
        table[(f"{module}.numeric", "_frombuffer")] = core.numeric._frombuffer
    return table


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _allowed_globals()[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only numpy "
                                         f"arrays, lists and strings") from None


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # pickle raises many types on garbage: UnpicklingError, EOFError, ValueError, ...
        raise CorruptFileError(f"{where}: not a readable CIFAR batch ({type(e).__name__}: {e}); the file is "
                               f"truncated or garbled, download it again") from None
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{where}: expected a pickled dict, found {type(obj).__name__}")
    # Keys are bytes in the official (Python 2) files; accept str keys from re-pickled copies too.
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _decode_names(names: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(names, (list, tuple)):
        raise CorruptFileError(f"{where}: {key!r} should be a list of class names, found {type(names).__name__}")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _batch_arrays(batch: dict, where: str, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``<u8>[N, 32, 32, 3]`` images and ``<i32>[N]`` labels from one unpickled batch."""
    if "data" not in batch or label_key not in batch:
        raise CorruptFileError(f"{where}: a CIFAR batch needs keys 'data' and {label_key!r}, found {sorted(batch)}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != _PIXELS:
        shape = getattr(data, "shape", type(data).__name__)
        raise CorruptFileError(f"{where}: 'data' should be an array [N, 3072] (32x32x3 pixels per row), "
                               f"found {shape}; the batch is truncated or garbled")
    labels = np.asarray(batch[label_key])
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise CorruptFileError(f"{where}: {data.shape[0]} images but {labels.shape} labels in {label_key!r}; "
                               f"the batch is truncated or garbled")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0
                        or labels.max() >= num_classes):
        raise CorruptFileError(f"{where}: {label_key!r} must be integers in 0..{num_classes - 1}")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or (data.size and (data.min() < 0 or data.max() > 255)):
            raise CorruptFileError(f"{where}: pixel values must be integers 0..255, found {data.dtype}")
    images = data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


class _Source:
    """A CIFAR folder or .tar.gz: lists member basenames, reads one by basename."""

    def __init__(self, path: Path):
        self.path = path
        self.members: dict[str, Callable[[], bytes]] = {}
        self.labels: dict[str, str] = {}
        if path.is_dir():
            for sub in (path, path / "cifar-10-batches-py", path / "cifar-100-python"):
                if sub.is_dir():
                    for f in sorted(sub.iterdir()):
                        if f.is_file() and f.name not in self.members:
                            self.members[f.name] = f.read_bytes
                            self.labels[f.name] = str(f)
            self._tar = None
        elif path.is_file():
            try:
                self._tar = tarfile.open(path, "r:*")
                infos = self._tar.getmembers()
            except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
                raise CorruptFileError(f"{path}: not a readable tar archive ({e}); download it again") from None
            for info in infos:
                if info.isfile():
                    base = info.name.rsplit("/", 1)[-1]
                    self.members.setdefault(base, lambda info=info: self._read_member(info))
                    self.labels.setdefault(base, f"{path} (member {info.name})")
        else:
            raise DatasetNotFoundError(f"{path}: no such file or folder")

    def _read_member(self, info: tarfile.TarInfo) -> bytes:
        try:
            f = self._tar.extractfile(info)
            return f.read()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise CorruptFileError(f"{self.path} (member {info.name}): archive is truncated or corrupt ({e}); "
                                   f"download it again") from None

    def kind(self) -> str | None:
        if any(n in self.members for n in ("data_batch_1", "test_batch", "batches.meta")):
            return "cifar10"
        if any(n in self.members for n in ("train", "test")) and "meta" in self.members:
            return "cifar100"
        return None

    def read(self, name: str) -> bytes:
        return self.members[name]()

    def read_many(self, names: list[str]) -> dict[str, bytes]:
        """Members by name, read in archive order: a .tar.gz only seeks forward, one decompression pass."""
        if self._tar is None:
            return {n: self.read(n) for n in names}
        order = {info.name.rsplit("/", 1)[-1]: info.offset_data for info in self._tar.getmembers()}
        return {n: self.read(n) for n in sorted(names, key=lambda n: order.get(n, 0))}

    def close(self):
        if self._tar is not None:
            self._tar.close()


def is_cifar_source(path: str | os.PathLike) -> str | None:
    """``"cifar10"``/``"cifar100"`` if ``path`` (folder or archive) holds that set's files, else None."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        for sub in (path, path / "cifar-10-batches-py", path / "cifar-100-python"):
            names = {p.name for p in sub.iterdir()} if sub.is_dir() else set()
            if names & {"data_batch_1", "test_batch", "batches.meta"}:
                return "cifar10"
            if "meta" in names and names & {"train", "test"}:
                return "cifar100"
        return None
    try:
        source = _Source(path)
    except DataError:
        return None
    try:
        return source.kind()
    finally:
        source.close()


def read_cifar(path_or_tar: str | os.PathLike, split: str = "train", coarse: bool = False) -> Dataset:
    """Read the ``split`` of CIFAR-10 or CIFAR-100 (which one is told by the files present).

    Args:
      path_or_tar: the extracted folder (``cifar-10-batches-py/`` or its parent) or the
        ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` archive, read in place.
      split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
      coarse: CIFAR-100 only: the 20 superclass labels (``coarse_labels``) instead of the
        100 fine ones.

    Returns:
      Dataset with ``images <u8>[N, 32, 32, 3]``, ``labels <i32>[N]``.

    Raises:
      CorruptFileError: a batch that is truncated, garbled or inconsistent (names the file,
        and the archive member when reading a .tar.gz).
      DataError: the folder holds no CIFAR batches, or a batch of the split is missing.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r} for CIFAR; use 'train' or 'test'")
    path = Path(path_or_tar).expanduser()
    source = _Source(path)
    try:
        kind = source.kind()
        if kind is None:
            raise DataError(f"{path}: no CIFAR batches found (expected data_batch_1..5, test_batch, batches.meta "
                            f"for CIFAR-10, or train, test, meta for CIFAR-100)")
        if coarse and kind != "cifar100":
            raise ConfigError("coarse=True needs CIFAR-100 (20 superclasses); this is CIFAR-10")
        files = (_CIFAR10_FILES if kind == "cifar10" else _CIFAR100_FILES)[split]
        missing = [f for f in files if f not in source.members]
        if missing:
            raise DataError(f"{path}: CIFAR {split} split is incomplete, missing {', '.join(missing)}; "
                            f"download the archive again")
        meta_name, names_key = ("batches.meta", "label_names") if kind == "cifar10" else (
            "meta", "coarse_label_names" if coarse else "fine_label_names")
        default = CIFAR10_CLASSES if kind == "cifar10" else (CIFAR100_SUPERCLASSES if coarse else CIFAR100_CLASSES)
        classes = default
        raw = source.read_many([meta_name, *files] if meta_name in source.members else list(files))
        if meta_name in raw:
            meta = _unpickle(raw.pop(meta_name), source.labels[meta_name])
            if names_key in meta:
                classes = _decode_names(meta[names_key], source.labels[meta_name], names_key)
        label_key = "labels" if kind == "cifar10" else ("coarse_labels" if coarse else "fine_labels")
        images, labels = [], []
        for f in files:
            where = source.labels[f]
            x, y = _batch_arrays(_unpickle(raw.pop(f), where), where, label_key, len(classes))
            images.append(x)
            labels.append(y)
    finally:
        source.close()
    suffix = "-coarse" if coarse else ""
    return Dataset(np.concatenate(images), np.concatenate(labels), classes, f"{kind}{suffix}/{split}")
