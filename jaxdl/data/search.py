"""Where data set files are looked for, in order.

1. the ``data_dir`` argument (``--data-dir`` on the command line);
2. ``$JAXDL_DATA`` (several folders may be joined with ``os.pathsep``, ``:`` on Linux);
3. the download cache, ``$XDG_CACHE_HOME/jaxdl`` or ``~/.cache/jaxdl`` (where
   :func:`jaxdl.data.download` writes);
4. ``/usr/share/datasets``, where Debian's data set packages install (``dataset-fashion-mnist``
   puts its files in ``/usr/share/datasets/fashion-mnist/``; ``dpkg -L dataset-fashion-mnist``
   lists them).

Inside each root, a data set's files may sit in ``<root>/<name>/``, in a spelling variant
(``fashion-mnist/``, ``cifar-10/``, torchvision's ``FashionMNIST/raw/``) or in ``<root>/``
itself. The first folder holding all files a split needs wins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

__all__ = ["ENV_VAR", "SYSTEM_DATA_DIR", "cache_dir", "search_roots", "candidate_dirs", "find_in", "describe_roots"]

ENV_VAR = "JAXDL_DATA"
# Debian's dataset-* packages install here (Debian policy for architecture-independent data).
SYSTEM_DATA_DIR = Path("/usr/share/datasets")


def cache_dir() -> Path:
    """The download cache: ``$XDG_CACHE_HOME/jaxdl``, else ``~/.cache/jaxdl``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "jaxdl"


def search_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path | None]]:
    """``(origin, folder)`` pairs in search order; folder is None for an unset origin."""
    roots: list[tuple[str, Path | None]] = [
        ("data_dir argument / --data-dir", Path(data_dir).expanduser() if data_dir is not None else None)]
    env = os.environ.get(ENV_VAR, "")
    env_dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    roots += [(f"${ENV_VAR}", d) for d in env_dirs] or [(f"${ENV_VAR}", None)]
    roots.append(("download cache", cache_dir()))
    roots.append(("system data sets (Debian dataset-* packages)", SYSTEM_DATA_DIR))
    return roots


def candidate_dirs(dirnames: Sequence[str], data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every folder to look in, in order: for each root, ``root/<dirname>`` for each dirname, then ``root``."""
    out: list[Path] = []
    for _, root in search_roots(data_dir):
        if root is None:
            continue
        for d in (*(root / n for n in dirnames), root):
            if d not in out:
                out.append(d)
    return out


def find_in(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` (each also tried with ``.gz``) that is a file in ``folder``."""
    for n in names:
        for candidate in (folder / n, folder / f"{n}.gz"):
            if candidate.is_file():
                return candidate
    return None


def describe_roots(dirnames: Sequence[str], data_dir: str | os.PathLike | None = None) -> str:
    """Lines naming each searched root and the subfolders tried in it, for not-found messages."""
    subs = ", ".join(f"{n}/" for n in dirnames)
    lines = []
    for i, (origin, root) in enumerate(search_roots(data_dir), start=1):
        if root is None:
            lines.append(f"  {i}. ({origin}: not set)")
        else:
            state = "" if root.is_dir() else ", does not exist"
            lines.append(f"  {i}. {root}  ({origin}{state}; and its subfolders {subs})")
    return "\n".join(lines)
