"""``load(name, split)``: the registered data sets and the path specs, behind one call.

Registered names: ``digits`` (embedded, the default), ``mnist``, ``fashion_mnist``, ``cifar10``,
``cifar100``. Path specs: ``folder:PATH`` (one subfolder per class), ``zip:PATH`` (the same
inside a zip), ``csv:PATH`` (pixel columns or path + label). See docs/data.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from pathlib import Path
from typing import Any, Callable

from jaxdl.data import cifar, images as image_files, search
from jaxdl.data.csv_reader import read_csv
from jaxdl.data.dataset import Dataset
from jaxdl.data.download import DOWNLOADS
from jaxdl.data.embedded import load_digits
from jaxdl.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from jaxdl.errors import ConfigError, CorruptFileError, DatasetNotFoundError, DataError

__all__ = ["DatasetInfo", "load", "available", "info", "PATH_SPECS", "SPLITS", "locate"]

SPLITS = ("train", "test")
PATH_SPECS = ("folder:PATH", "zip:PATH", "csv:PATH")

MNIST_CLASSES = tuple(str(i) for i in range(10))
# Zalando's README, "Labels" table (Xiao et al. 2017, arXiv:1708.07747).
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")

# Debian packages that install a registered data set under /usr/share/datasets.
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What is known about a data set without reading its pixels.

    Attributes:
      name: registered name or path spec.
      num_classes: number of classes.
      image_shape: ``(H, W, C)`` of the stored images.
      classes: class names, index = label.
      description: one line with the source paper.
      splits: the splits ``load`` accepts.
      num_examples: ``{split: count}`` where known without reading, else empty.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    description: str
    splits: tuple[str, ...] = SPLITS
    num_examples: dict[str, int] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------ locating files


def _not_found(name: str, split: str, wanted: str, dirnames: tuple[str, ...], data_dir) -> DatasetNotFoundError:
    how = []
    if name in DEBIAN_PACKAGES:
        pkg = DEBIAN_PACKAGES[name]
        how.append(f"on Debian/Ubuntu: sudo apt-get install {pkg} (installs into "
                   f"{search.SYSTEM_DATA_DIR / pkg.removeprefix('dataset-')}; `dpkg -L {pkg}` lists the files)")
    if name in DOWNLOADS:
        how.append(f"with internet access: jaxdl download {name}  (or jaxdl.data.download({name!r}); writes "
                   f"{search.cache_dir() / name})")
    how.append(f"or copy the files into one of the folders above, or pass --data-dir / set ${search.ENV_VAR}")
    return DatasetNotFoundError(
        f"data set {name!r} ({split} split) not found: looked for {wanted} in\n"
        f"{search.describe_roots(dirnames, data_dir)}\nTo get it:\n  - " + "\n  - ".join(how))


_IDX_FILES = {
    "train": (("train-images-idx3-ubyte", "train-images.idx3-ubyte"), ("train-labels-idx1-ubyte",
                                                                        "train-labels.idx1-ubyte")),
    "test": (("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"), ("t10k-labels-idx1-ubyte",
                                                                     "t10k-labels.idx1-ubyte")),
}


def _locate_idx(name: str, split: str, dirnames: tuple[str, ...], data_dir) -> tuple[Path, Path]:
    image_names, label_names = _IDX_FILES[split]
    for folder in search.candidate_dirs(dirnames, data_dir):
        images = search.find_in(folder, image_names)
        labels = search.find_in(folder, label_names)
        if images and labels:
            return images, labels
    wanted = f"{image_names[0]}[.gz] and {label_names[0]}[.gz]"
    raise _not_found(name, split, wanted, dirnames, data_dir)


_CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _locate_cifar(name: str, split: str, dirnames: tuple[str, ...], data_dir) -> Path:
    for folder in search.candidate_dirs(dirnames, data_dir):
        if folder.is_dir() and cifar.is_cifar_source(folder) == name:
            return folder
        archive = folder / _CIFAR_ARCHIVES[name]
        if archive.is_file():
            return archive
    wanted = f"{_CIFAR_FOLDERS[name]}/ or {_CIFAR_ARCHIVES[name]}"
    raise _not_found(name, split, wanted, dirnames, data_dir)


# ------------------------------------------------------------------------------ registered sets


@dataclasses.dataclass(frozen=True)
class _Registered:
    info: DatasetInfo
    dirnames: tuple[str, ...]
    loader: Callable[..., Dataset]


def _load_idx(name: str, dirnames: tuple[str, ...], classes: tuple[str, ...]):
    def loader(split: str, data_dir=None) -> Dataset:
        images_path, labels_path = _locate_idx(name, split, dirnames, data_dir)
        images = read_idx(images_path, IDX_IMAGES_MAGIC)
        labels = read_idx(labels_path, IDX_LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise CorruptFileError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                                   f"{labels.shape[0]} labels; one of them is from another release, download both "
                                   f"again")
        if labels.size and labels.max() >= len(classes):
            raise CorruptFileError(f"{labels_path}: label {int(labels.max())} is out of range for {len(classes)} "
                                   f"classes")
        return Dataset(images[..., None], labels.astype("int32"), classes, f"{name}/{split}")
    return loader


def _load_cifar(name: str, dirnames: tuple[str, ...]):
    def read(split: str, data_dir, coarse: bool) -> Dataset:
        source = _locate_cifar(name, split, dirnames, data_dir)
        dataset = cifar.read_cifar(source, split, coarse=coarse)
        if dataset.name.split("/")[0].removesuffix("-coarse") != name:
            raise CorruptFileError(f"{source}: holds {dataset.name.split('/')[0]}, not {name}; "
                                   f"put the right archive there")
        return dataset
    if name == "cifar10":  # no options: `load("cifar10", coarse=True)` is a ConfigError
        return lambda split, data_dir=None: read(split, data_dir, False)
    return lambda split, data_dir=None, coarse=False: read(split, data_dir, coarse)


_MNIST_DIRS = ("mnist", "MNIST/raw")
_FASHION_DIRS = ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw")
_CIFAR10_DIRS = ("cifar10", "cifar-10", "cifar_10")
_CIFAR100_DIRS = ("cifar100", "cifar-100", "cifar_100")

_REGISTRY: dict[str, _Registered] = {
    "digits": _Registered(
        DatasetInfo("digits", 10, (8, 8, 1), MNIST_CLASSES,
                    "scikit-learn's bundled UCI handwritten digits, 8x8 gray (Alpaydin & Kaynak 1998); "
                    "embedded, no files needed; fixed stratified split, 20% test, seed 0",
                    num_examples={"train": 1438, "test": 359}),
        (), lambda split, data_dir=None: load_digits(split)),
    "mnist": _Registered(
        DatasetInfo("mnist", 10, (28, 28, 1), MNIST_CLASSES,
                    "MNIST handwritten digits, 28x28 gray (LeCun et al. 1998); IDX files",
                    num_examples={"train": 60000, "test": 10000}),
        _MNIST_DIRS, _load_idx("mnist", _MNIST_DIRS, MNIST_CLASSES)),
    "fashion_mnist": _Registered(
        DatasetInfo("fashion_mnist", 10, (28, 28, 1), FASHION_MNIST_CLASSES,
                    "Fashion-MNIST clothing images, 28x28 gray (Xiao et al. 2017, arXiv:1708.07747); IDX files",
                    num_examples={"train": 60000, "test": 10000}),
        _FASHION_DIRS, _load_idx("fashion_mnist", _FASHION_DIRS, FASHION_MNIST_CLASSES)),
    "cifar10": _Registered(
        DatasetInfo("cifar10", 10, (32, 32, 3), cifar.CIFAR10_CLASSES,
                    "CIFAR-10 tiny colour images, 32x32 RGB (Krizhevsky 2009); python batches",
                    num_examples={"train": 50000, "test": 10000}),
        _CIFAR10_DIRS, _load_cifar("cifar10", _CIFAR10_DIRS)),
    "cifar100": _Registered(
        DatasetInfo("cifar100", 100, (32, 32, 3), cifar.CIFAR100_CLASSES,
                    "CIFAR-100, 100 fine classes in 20 superclasses (coarse=True), 32x32 RGB (Krizhevsky 2009)",
                    num_examples={"train": 50000, "test": 10000}),
        _CIFAR100_DIRS, _load_cifar("cifar100", _CIFAR100_DIRS)),
}


def available() -> list[str]:
    """Registered data set names (path specs ``folder:``, ``zip:``, ``csv:`` are accepted too)."""
    return list(_REGISTRY)


# ------------------------------------------------------------------------------ path specs


def _parse_spec(name: str) -> tuple[str, Path] | None:
    kind, sep, rest = name.partition(":")
    if sep and kind in ("folder", "zip", "csv"):
        if not rest:
            raise ConfigError(f"{name!r}: give a path after '{kind}:', e.g. {kind}:/data/pets")
        return kind, Path(rest).expanduser()
    return None


def _csv_for_split(path: Path, split: str) -> Path:
    if path.is_dir():
        candidate = path / f"{split}.csv"
        if not candidate.is_file():
            raise DataError(f"{path}: a csv: folder must hold train.csv and test.csv; {candidate.name} is missing")
        return candidate
    if split == "test":
        raise DataError(f"csv:{path} is a single file and is used as the train split; there is no test split. "
                        f"Give a folder holding train.csv and test.csv, or hold out part of the data with "
                        f"jaxdl.data.train_val_split")
    return path


def _load_spec(kind: str, path: Path, split: str, kw: dict[str, Any]) -> Dataset:
    if kind == "csv":
        _check_kwargs(f"csv:{path}", kw, read_csv, skip=("path", "name"))
        return read_csv(_csv_for_split(path, split), name=f"csv:{path}/{split}", **kw)
    _check_kwargs(f"{kind}:{path}", kw, image_files.read_image_folder, skip=("path", "classes", "name"))
    if kind == "folder":
        if not path.is_dir():
            raise DatasetNotFoundError(f"folder:{path}: no such folder")
        splits = image_files.folder_splits(path)
        if split not in splits:
            raise DataError(f"folder:{path} has no train/ and test/ subfolders, so the whole folder is the train "
                            f"split and there is no {split!r} split; add train/ and test/ subfolders, or hold out "
                            f"data with jaxdl.data.train_val_split")
        if splits == ("train",):
            return image_files.read_image_folder(path, name=f"folder:{path}/train", **kw)
        classes = image_files.folder_classes(path / "train")
        return image_files.read_image_folder(path / split, classes=classes, name=f"folder:{path}/{split}", **kw)
    classes = image_files.zip_classes(path, "train") if split == "test" else None
    return image_files.read_zip(path, split, classes=classes, **kw)


def _check_kwargs(what: str, kw: dict[str, Any], fn: Callable, skip: tuple[str, ...] = ()) -> None:
    accepted = [p for p in inspect.signature(fn).parameters if p not in skip and p != "split"]
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise ConfigError(f"{what} does not take option(s) {', '.join(unknown)}; it accepts: "
                          f"{', '.join(accepted) or 'none'}")


# ------------------------------------------------------------------------------ public entry points


def _unknown(name: str) -> ConfigError:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    path_hint = ""
    if os.path.exists(os.path.expanduser(name)):
        kind = "zip" if name.endswith(".zip") else "csv" if name.endswith(".csv") else "folder"
        path_hint = f" {name!r} is a path: write it as {kind}:{name}."
    return ConfigError(f"unknown data set {name!r}.{hint}{path_hint} Valid names: {', '.join(_REGISTRY)}; or a path "
                       f"spec: {', '.join(PATH_SPECS)}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use 'train' or 'test' (for a validation split use "
                          f"jaxdl.data.train_val_split on 'train')")


def load(name: str, split: str = "train", *, data_dir: str | os.PathLike | None = None, **kw: Any) -> Dataset:
    """Load one split of a data set.

    Args:
      name: a registered name (:func:`available`) or a path spec ``folder:PATH``,
        ``zip:PATH``, ``csv:PATH``.
      split: ``"train"`` or ``"test"``.
      data_dir: searched first for the files of registered sets (see ``jaxdl.data.search``).
      **kw: reader options: ``coarse`` (cifar100); ``image_size=(H, W)``, ``channels`` (folder,
        zip, csv with paths); ``label_column``, ``image_shape``, ``path_column`` (csv).

    Returns:
      Dataset with ``images <u8>[N, H, W, C]`` and ``labels <i32>[N]``.

    Raises:
      ConfigError: unknown name, split or option.
      DatasetNotFoundError: the files are not in any searched folder (the message lists the
        folders and how to get the data).
      CorruptFileError: a file is truncated or malformed (the message names it).
    """
    _check_split(split)
    spec = _parse_spec(name)
    if spec is not None:
        return _load_spec(*spec, split, kw)
    if name not in _REGISTRY:
        raise _unknown(name)
    entry = _REGISTRY[name]
    _check_kwargs(name, kw, entry.loader, skip=("data_dir",))
    return entry.loader(split, data_dir=data_dir, **kw)


def locate(name: str, split: str = "train", *, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The files ``load`` would read for a registered set (DatasetNotFoundError if absent); [] for digits."""
    _check_split(split)
    if name not in _REGISTRY:
        raise _unknown(name)
    entry = _REGISTRY[name]
    if name == "digits":
        return []
    if name in ("cifar10", "cifar100"):
        return [_locate_cifar(name, split, entry.dirnames, data_dir)]
    return list(_locate_idx(name, split, entry.dirnames, data_dir))


def info(name: str, *, data_dir: str | os.PathLike | None = None, **kw: Any) -> DatasetInfo:
    """:class:`DatasetInfo` of a registered set (no file access) or a path spec (reads one image;
    a csv is read whole)."""
    spec = _parse_spec(name)
    if spec is None:
        if name not in _REGISTRY:
            raise _unknown(name)
        base = _REGISTRY[name].info
        if name == "cifar100" and kw.get("coarse"):
            return dataclasses.replace(base, num_classes=20, classes=cifar.CIFAR100_SUPERCLASSES,
                                       description=base.description + " (coarse labels)")
        return base
    kind, path = spec
    if kind == "csv":
        train = _load_spec(kind, path, "train", kw)
        splits = ("train", "test") if path.is_dir() else ("train",)
        return DatasetInfo(name, train.num_classes, train.image_shape, train.classes, f"images from CSV {path}",
                           splits, {"train": len(train)})
    _check_kwargs(name, kw, image_files.read_image_folder, skip=("path", "classes", "name"))
    image_size, channels = kw.get("image_size"), kw.get("channels")
    if kind == "folder":
        if not path.is_dir():
            raise DatasetNotFoundError(f"folder:{path}: no such folder")
        splits = image_files.folder_splits(path)
        root = path / "train" if splits == ("train", "test") else path
        classes = image_files.folder_classes(root)
        first = next((p for c in classes for p in sorted((root / c).rglob("*"))
                      if p.is_file() and image_files._is_image_name(p.name)), None)
        if first is None:
            raise DataError(f"{root}: no image files found inside class subfolders")
        sample = image_files.decode_image(first, str(first), channels=channels,
                                          image_size=image_files._check_size(image_size))
        return DatasetInfo(name, len(classes), tuple(sample.shape), classes, f"image folder {path}", splits)
    layout = image_files._ZipLayout(path)
    try:
        splits = layout.splits()
        entries = layout.entries("train")
        if not entries:
            raise DataError(f"{path}: no images found in the zip")
        classes = tuple(sorted({c for c, _, _ in entries}))
        _, member, shown = entries[0]
        sample = image_files.decode_image(layout.read(member, shown), shown, channels=channels,
                                          image_size=image_files._check_size(image_size))
    finally:
        layout.zip.close()
    return DatasetInfo(name, len(classes), tuple(sample.shape), classes, f"images in zip {path}", splits)
