"""Atomic writes for run outputs: a crash never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

__all__ = ["write_text_atomic", "write_json_atomic", "write_jsonl_atomic", "read_jsonl", "parse_key_values",
           "check_new_run_dir", "replace_run_dir"]


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def check_new_run_dir(out: Path, overwrite: bool, resume_hint: str = "--resume") -> None:
    """Refuse to start a new run in ``out`` when it already holds files and ``overwrite`` is off.

    Raises:
      ConfigError: naming ``resume_hint`` (how this command continues a run), ``--overwrite`` and ``--out``.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        from jaxdl.errors import ConfigError
        raise ConfigError(f"{out} already holds files; use {resume_hint} to continue that run, "
                          f"--overwrite to replace it, or another --out")


def replace_run_dir(out: Path) -> None:
    """Make ``out`` an empty folder, removing what was there (call only once the run's data and
    model were built, so that bad input never costs an earlier run)."""
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True)


def parse_key_values(text: str) -> dict[str, Any]:
    """Parse a command-line option list ``a=1,b=relu,c=[1,2]`` into a dict; values are read as
    JSON where they parse (numbers, booleans, lists), else kept as strings; commas inside
    brackets do not split.

    Raises:
      ValueError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    if not text:
        return out
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[({"
        depth -= ch in "])}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    for item in (p for p in parts if p.strip()):
        if "=" not in item:
            raise ValueError(f"expected KEY=VALUE pairs separated by commas, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
