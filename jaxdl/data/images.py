"""Image files on disk: a folder with one subfolder per class, or the same inside a ``.zip``.

Layout (the torchvision ``ImageFolder`` convention)::

    pets/                  pets.zip
      cat/001.png            cat/001.png      (or pets/cat/001.png: one wrapping
      dog/002.jpg            dog/002.jpg       folder is skipped)

Class names are the subfolder names, sorted; labels index them. Images are decoded with
pillow (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM); files with other extensions and hidden
files are ignored. Zips are read member by member, never extracted.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from jaxdl.data.dataset import Dataset
from jaxdl.errors import ConfigError, CorruptFileError, DataError, DatasetNotFoundError

__all__ = ["read_image_folder", "read_zip", "decode_image", "IMAGE_EXTENSIONS", "folder_splits", "zip_splits"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pbm", ".pnm"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "La"})


def _check_size(image_size: Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ConfigError(f"image_size must be (height, width), got {image_size!r}") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"image_size must be positive, got {image_size!r}")
    return h, w


def _check_channels(channels: int | None) -> int | None:
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 (grayscale), 3 (RGB) or None (inferred), got {channels!r}")
    return channels


def image_channels(image: Image.Image) -> int:
    """1 for grayscale pillow modes, 3 otherwise (alpha is dropped)."""
    if image.mode == "P":  # palette: grayscale only if the palette is
        return 3
    return 1 if image.mode in _GRAY_MODES else 3


def decode_image(data: bytes | Path, where: str, *, channels: int | None = None,
                 image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one image file into ``<u8>[H, W, C]``.

    Args:
      data: encoded bytes, or a path to read.
      where: how to name the file in errors (path, or "archive.zip (member a/b.png)").
      channels: 1 or 3 to convert, None to keep the file's own (grayscale -> 1, else 3).
      image_size: ``(H, W)`` to resize to (bilinear), None to keep the size.

    Raises:
      CorruptFileError: pillow cannot decode the file (names ``where``).
    """
    try:
        source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        with Image.open(source) as image:
            image.load()  # decode now, so truncated files fail here and not later
            c = channels or image_channels(image)
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float gray: scale to 8 bits
                arr = np.asarray(image, dtype=np.float64)
                top = 65535.0 if image.mode.startswith("I") and arr.max(initial=0) > 255 else 255.0
                image = Image.fromarray(np.clip(np.round(arr * 255.0 / top), 0, 255).astype(np.uint8), "L")
            image = image.convert("L" if c == 1 else "RGB")
            if image_size is not None and image.size != (image_size[1], image_size[0]):
                image = image.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, zlib.error) as e:
        raise CorruptFileError(f"{where}: unreadable image ({type(e).__name__}: {e}); remove or replace the "
                               f"file") from None
    return array[..., None] if array.ndim == 2 else array


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def _stack(entries: Sequence[tuple[str, str, Callable[[], bytes | Path]]], classes: tuple[str, ...],
           *, source: str, image_size, channels, name: str) -> Dataset:
    """Decode (class, where, read) entries into a Dataset, enforcing one shape."""
    image_size, channels = _check_size(image_size), _check_channels(channels)
    if not entries:
        raise DataError(f"{source}: no image files found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))} "
                        f"inside one subfolder per class)")
    index = {c: i for i, c in enumerate(classes)}
    images, labels = [], []
    first_where = None
    for cls, where, read in entries:
        array = decode_image(read(), where, channels=channels, image_size=image_size)
        if channels is None:
            channels = array.shape[-1]  # the first image decides grayscale vs RGB
        if images and array.shape != images[0].shape:
            raise DataError(f"{where}: image is {array.shape[1]}x{array.shape[0]} but {first_where} is "
                            f"{images[0].shape[1]}x{images[0].shape[0]} (width x height); images of differing "
                            f"sizes need image_size=(H, W) to resize them all")
        first_where = first_where or where
        images.append(array)
        labels.append(index[cls])
    return Dataset(np.stack(images), np.asarray(labels, np.int32), classes, name)


# ----------------------------------------------------------------------------- folders


def folder_splits(path: str | os.PathLike) -> tuple[str, ...]:
    """``("train", "test")`` if ``path`` has ``train/`` and ``test/`` subfolders, else ``("train",)``."""
    path = Path(path)
    return ("train", "test") if (path / "train").is_dir() and (path / "test").is_dir() else ("train",)


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def folder_classes(root: str | os.PathLike) -> tuple[str, ...]:
    """Class names of an image folder (its sorted subfolder names)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: no such folder")
    return tuple(p.name for p in _class_dirs(root))


def _folder_entries(root: Path) -> list[tuple[str, str, Callable[[], Path]]]:
    loose = [p.name for p in root.iterdir() if p.is_file() and _is_image_name(p.name)]
    if loose:
        raise DataError(f"{root}: image files must sit in one subfolder per class, but {len(loose)} lie directly "
                        f"in the folder (e.g. {sorted(loose)[0]}); move them into <class name>/ subfolders")
    entries = []
    for cls_dir in _class_dirs(root):
        for dirpath, dirnames, filenames in os.walk(cls_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if _is_image_name(f):
                    p = Path(dirpath) / f
                    entries.append((cls_dir.name, str(p), lambda p=p: p))
    return entries


def read_image_folder(path: str | os.PathLike, *, image_size: Sequence[int] | None = None,
                      channels: int | None = None, classes: Sequence[str] | None = None,
                      name: str | None = None) -> Dataset:
    """Read a folder with one subfolder per class (images may sit deeper inside each).

    Args:
      path: the folder whose subfolders are the classes.
      image_size: ``(H, W)`` to resize every image to; None requires all images to share a
        size (else DataError naming the first odd file).
      channels: 1 or 3; None takes it from the first image.
      classes: fixed class list (e.g. the train split's, so test labels agree); subfolders
        not in it are an error. None: the sorted subfolder names.

    Returns:
      Dataset ``images <u8>[N, H, W, C]``, labels in sorted-class order.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: no such folder; expected a folder with one subfolder of images per class")
    found = folder_classes(root)
    if classes is None:
        classes = found
    else:
        classes = tuple(classes)
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(f"{root}: class folder(s) {', '.join(extra)} are not among the training classes "
                            f"({', '.join(classes)})")
    if not classes:
        raise DataError(f"{root}: no class subfolders; put the images of each class in <folder>/<class name>/")
    return _stack(_folder_entries(root), tuple(classes), source=str(root), image_size=image_size,
                  channels=channels, name=name or f"folder:{root}")


# ----------------------------------------------------------------------------- zips


class _ZipLayout:
    """Member names of an image zip, with any single wrapping folder and the split folder stripped."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise DatasetNotFoundError(f"{path}: no such file; expected a .zip of <class name>/<image> entries")
        try:
            self.zip = zipfile.ZipFile(path)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise CorruptFileError(f"{path}: not a readable zip archive ({e})") from None
        members = [i.filename for i in infos if not i.is_dir() and not i.filename.startswith("__MACOSX/")
                   and _is_image_name(i.filename)]
        parts = [PurePosixPath(m).parts for m in members]
        # Skip wrapping folders ("pets/cat/1.png" -> "cat/1.png", and a lone "train/") while every
        # member is still inside a class folder.
        while parts and all(len(p) >= 3 for p in parts) and len({p[0] for p in parts}) == 1:
            parts = [p[1:] for p in parts]
        self.members = members
        self.parts = parts
        tops = {p[0] for p in parts if len(p) >= 3}
        self.split_layout = {"train", "test"} <= tops and all(len(p) >= 3 and p[0] in ("train", "test")
                                                              for p in parts)

    def splits(self) -> tuple[str, ...]:
        return ("train", "test") if self.split_layout else ("train",)

    def entries(self, split: str) -> list[tuple[str, str, str]]:
        """(class, member, shown name) for the split, in sorted member order."""
        out = []
        for member, p in zip(self.members, self.parts):
            if self.split_layout:
                if p[0] != split:
                    continue
                p = p[1:]
            if len(p) < 2:
                raise DataError(f"{self.path}: image {member} is not inside a class folder; a zip must hold "
                                f"<class name>/<image> (optionally under train/ and test/)")
            out.append((p[0], member, f"{self.path} (member {member})"))
        return sorted(out, key=lambda e: e[1])

    def classes(self, split: str) -> tuple[str, ...]:
        return tuple(sorted({c for c, _, _ in self.entries(split)}))

    def read(self, member: str, shown: str) -> bytes:
        try:
            return self.zip.read(member)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as e:
            raise CorruptFileError(f"{shown}: cannot be extracted from the zip ({e})") from None


def zip_splits(path: str | os.PathLike) -> tuple[str, ...]:
    """``("train", "test")`` if the zip has ``train/`` and ``test/`` folders, else ``("train",)``."""
    layout = _ZipLayout(Path(path).expanduser())
    try:
        return layout.splits()
    finally:
        layout.zip.close()


def zip_classes(path: str | os.PathLike, split: str = "train") -> tuple[str, ...]:
    layout = _ZipLayout(Path(path).expanduser())
    try:
        return layout.classes(split)
    finally:
        layout.zip.close()


def read_zip(path: str | os.PathLike, split: str = "train", *, image_size: Sequence[int] | None = None,
             channels: int | None = None, classes: Sequence[str] | None = None,
             name: str | None = None) -> Dataset:
    """Read images straight from a ``.zip`` laid out like an image folder, without extracting.

    ``cat/1.png``, ``pets/cat/1.png`` (one wrapping folder) and ``train/cat/1.png`` +
    ``test/cat/2.png`` layouts are recognised. For a zip without ``train/``/``test/`` the whole
    archive is the train split. Other arguments as :func:`read_image_folder`.

    Raises:
      CorruptFileError: the archive is unreadable, or an image in it is (names the zip and member).
      DataError: no images, images of differing sizes without ``image_size``, a missing split.
    """
    path = Path(path).expanduser()
    layout = _ZipLayout(path)
    try:
        if split not in layout.splits():
            raise DataError(f"{path}: has no {split!r} split; only a zip with train/ and test/ folders has a test "
                            f"split, otherwise the whole archive is 'train' (hold out data with "
                            f"jaxdl.data.train_val_split)")
        entries = layout.entries(split)
        found = tuple(sorted({c for c, _, _ in entries}))
        if classes is None:
            classes = found
        else:
            classes = tuple(classes)
            extra = sorted(set(found) - set(classes))
            if extra:
                raise DataError(f"{path}: class folder(s) {', '.join(extra)} in {split}/ are not among the training "
                                f"classes ({', '.join(classes)})")
        stacked = [(c, shown, (lambda m=m, s=shown: layout.read(m, s))) for c, m, shown in entries]
        return _stack(stacked, tuple(classes), source=str(path), image_size=image_size, channels=channels,
                      name=name or f"zip:{path}/{split}")
    finally:
        layout.zip.close()
