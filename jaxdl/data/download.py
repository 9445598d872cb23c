"""Downloading the public data sets, for machines with internet access.

Each file is streamed into a hidden temporary file in the destination folder, its checksum
checked, and only then renamed into place (``os.replace``, atomic on one file system), so an
interrupted or corrupted download never leaves a file that a later ``load`` would pick up.

Checksums are the ones the data sets' authors publish, which are MD5 (MNIST: as distributed
by LeCun et al. and mirrored by torchvision; Fashion-MNIST: the table in Zalando's README;
CIFAR: Krizhevsky's page). MD5 guards against truncation and corruption, not against a
malicious mirror; :class:`RemoteFile` also takes a SHA-256 where one is known.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from jaxdl.data.search import cache_dir
from jaxdl.errors import ConfigError, DownloadError

__all__ = ["RemoteFile", "DOWNLOADS", "download", "downloadable", "file_digest"]


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: its name on disk, mirrors tried in order, and its checksum."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None

    def __post_init__(self):
        if not self.md5 and not self.sha256:
            raise ConfigError(f"{self.filename}: a download needs an md5 or sha256 checksum")
        if not self.urls:
            raise ConfigError(f"{self.filename}: no URL to download from")

    @property
    def checksum(self) -> tuple[str, str]:
        """``(algorithm, hex digest)``, SHA-256 preferred."""
        return ("sha256", self.sha256.lower()) if self.sha256 else ("md5", self.md5.lower())


def _files(mirrors: Sequence[str], files: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, tuple(m + name for m in mirrors), md5=md5) for name, md5 in files.items())


# Published MD5 checksums; see the module docstring for their sources.
DOWNLOADS: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": _files(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
         "http://yann.lecun.com/exdb/mnist/"),
        {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
    "fashion_mnist": _files(
        ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
         "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
        {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "cifar10": _files(("https://www.cs.toronto.edu/~kriz/",),
                      {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}),
    "cifar100": _files(("https://www.cs.toronto.edu/~kriz/",),
                       {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"}),
}

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def downloadable() -> list[str]:
    """Names :func:`download` knows."""
    return sorted(DOWNLOADS)


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, dest_dir: Path, remote: RemoteFile) -> Path:
    """Stream ``url`` into a temp file in ``dest_dir``, verify, rename. Raises OSError/URLError or ValueError."""
    algorithm, expected = remote.checksum
    fd, tmp_name = tempfile.mkstemp(prefix=f".{remote.filename}.", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        h = hashlib.new(algorithm)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            for block in iter(lambda: response.read(_CHUNK), b""):
                h.update(block)
                out.write(block)
        if h.hexdigest() != expected:
            raise ValueError(f"{algorithm} checksum mismatch: expected {expected}, got {h.hexdigest()}")
        final = dest_dir / remote.filename
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def download(name: str, dest: str | os.PathLike | None = None, *, force: bool = False,
             files: Sequence[RemoteFile] | None = None) -> Path:
    """Download data set ``name`` (mnist, fashion_mnist, cifar10, cifar100) and verify it.

    Args:
      name: a key of :data:`DOWNLOADS`.
      dest: folder to write into; default ``~/.cache/jaxdl/<name>`` (searched by ``load``).
      force: download again even if a file with a good checksum is present.
      files: replaces the table entry (other mirrors, or ``file://`` URLs in tests).

    Returns:
      The destination folder.

    Raises:
      DownloadError: every mirror failed (offline, HTTP error, or checksum mismatch); the
        message gives the URLs and where to put the files by hand. No partial file is left.
    """
    if files is None:
        if name not in DOWNLOADS:
            raise ConfigError(f"no download known for {name!r}; downloadable: {', '.join(downloadable())} "
                              f"(digits ships with scikit-learn and needs none)")
        files = DOWNLOADS[name]
    dest_dir = Path(dest).expanduser() if dest is not None else cache_dir() / name
    created = not dest_dir.exists()
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the download folder {dest_dir} ({e.strerror or e}); pass another "
                            f"destination") from None
    for remote in files:
        final = dest_dir / remote.filename
        algorithm, expected = remote.checksum
        if final.is_file() and not force and file_digest(final, algorithm) == expected:
            continue
        failures = []
        for url in remote.urls:
            try:
                _fetch(url, dest_dir, remote)
                break
            except urllib.error.HTTPError as e:
                failures.append(f"{url}: server answered HTTP {e.code} {e.reason}")
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", None) or e
                failures.append(f"{url}: could not connect ({reason})")
            except ValueError as e:  # checksum
                failures.append(f"{url}: {e}")
        else:
            offline = all("could not connect" in f for f in failures)
            hint = "this machine seems to be offline. " if offline else ""
            if created and not any(dest_dir.iterdir()):
                dest_dir.rmdir()  # leave nothing behind, not even an empty folder we made
            raise DownloadError(
                f"downloading {name} failed: {hint}Tried:\n  " + "\n  ".join(failures) +
                f"\nFetch {remote.filename} ({algorithm} {expected}) on a machine with internet access and copy it "
                f"into {dest_dir} (or into the folder given by --data-dir or $JAXDL_DATA).")
    return dest_dir
