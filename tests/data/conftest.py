"""Writers of small files in the real formats (IDX, CIFAR pickles, PNG folders, zips, CSVs)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxdl.data import search


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> Path:
    """IDX as in LeCun's description: big-endian magic 0x000008<ndim>, uint32 dims, then the bytes."""
    array = np.asarray(array, np.uint8)
    magic = 0x00000800 | array.ndim if magic is None else magic
    payload = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)
    return path


def make_idx_set(folder: Path, n_train: int = 12, n_test: int = 6, gz: bool = True, seed: int = 0,
                 classes: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four MNIST files with random content; returns {split: (images [N,28,28], labels [N])}."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, classes, (n,), dtype=np.uint8)
        ext = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        out[split] = (images, labels)
    return out


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """[N, 32, 32, 3] -> [N, 3072] in the CIFAR row layout (all red, then green, then blue)."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def cifar10_files(n: int = 4, seed: int = 0) -> tuple[dict[str, dict], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """CIFAR-10 batch dicts keyed as in the archive, and the expected {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    files, train_x, train_y = {}, [], []
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    for name in names:
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        files[name] = {b"batch_label": name.encode(), b"data": cifar_rows(x), b"labels": y,
                       b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        if name != "test_batch":
            train_x.append(x)
            train_y += y
    files["batches.meta"] = {b"label_names": [f"class{i}".encode() for i in range(10)],
                             b"num_cases_per_batch": n, b"num_vis": 3072}
    test = files["test_batch"]
    expected = {"train": (np.concatenate(train_x), np.asarray(train_y)),
                "test": (test[b"data"].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(test[b"labels"]))}
    return files, expected


def cifar100_files(n: int = 5, seed: int = 0) -> tuple[dict[str, dict], dict[str, tuple]]:
    rng = np.random.default_rng(seed)
    files, expected = {}, {}
    for split in ("train", "test"):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [f // 5 for f in fine]
        files[split] = {b"data": cifar_rows(x), b"fine_labels": fine, b"coarse_labels": coarse}
        expected[split] = (x, np.asarray(fine), np.asarray(coarse))
    files["meta"] = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}
    return files, expected


def pickled(obj, protocol: int = 2) -> bytes:
    return pickle.dumps(obj, protocol=protocol)


def write_cifar_folder(folder: Path, files: dict[str, dict | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else pickled(content))
    return folder


def write_cifar_tar(path: Path, top: str, files: dict[str, dict | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            raw = content if isinstance(content, bytes) else pickled(content)
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buf, format="PNG")
    return buf.getvalue()


def make_image_folder(root: Path, per_class: dict[str, int], shape=(6, 5, 3), seed: int = 0) -> dict[str, list]:
    """root/<class>/<i>.png with random pixels; returns {class: [arrays in file order]}."""
    rng = np.random.default_rng(seed)
    out = {}
    for cls, count in per_class.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        out[cls] = []
        for i in range(count):
            a = rng.integers(0, 256, shape, dtype=np.uint8)
            (root / cls / f"{i:03d}.png").write_bytes(png_bytes(a))
            out[cls].append(a)
    return out


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    return path


@pytest.fixture
def fmt():
    """The writers above, as one namespace."""
    return types.SimpleNamespace(
        write_idx=write_idx, make_idx_set=make_idx_set, cifar10_files=cifar10_files, cifar100_files=cifar100_files,
        cifar_rows=cifar_rows, pickled=pickled, write_cifar_folder=write_cifar_folder,
        write_cifar_tar=write_cifar_tar, png_bytes=png_bytes, make_image_folder=make_image_folder, make_zip=make_zip)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Search roots moved under tmp_path: nothing from the real machine (cache, /usr/share/datasets) is seen."""
    r = types.SimpleNamespace(data_dir=tmp_path / "arg", env=tmp_path / "env", cache=tmp_path / "xdg" / "jaxdl",
                              system=tmp_path / "system")
    monkeypatch.delenv(search.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(search, "SYSTEM_DATA_DIR", r.system)
    return r
