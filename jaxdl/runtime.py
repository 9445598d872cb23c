"""Process-level speed switches: a faster host memory allocator for XLA's CPU backend.

Why: a jitted train step on CPU asks the allocator for one large temporary buffer per
execution (738 MiB for a CIFAR ResNet-18 at batch 64). glibc's malloc serves every block
over 32 MiB with a fresh ``mmap`` and returns it with ``munmap`` when the step ends, so
each step faults its whole working set in again (about 200,000 minor page faults and
0.5-0.8 s of kernel time per step on a 2-core Zen 3 host). glibc cannot be told at run
time to keep such blocks (its mmap threshold is capped at 32 MiB on 64-bit, and non-main
arenas mmap them regardless of ``M_MMAP_MAX``); only environment settings made before the
process starts (``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0``) do, at up to 65% more resident
memory. tcmalloc keeps freed spans and reuses them: the faults and the kernel time go, and
the step was 1.0-1.5x faster in alternated runs (median about 1.1x; docs/performance.md,
"Host allocator").

An allocator must be chosen before the process starts, so :func:`use_fast_allocator`
re-executes the current command once with ``LD_PRELOAD`` naming tcmalloc. The ``jaxdl``
command, ``python -m jaxdl`` and ``experiments/benchmark.py`` call it first thing; a script
of your own can do the same (the first lines, before importing jax)::

    import jaxdl.runtime
    jaxdl.runtime.use_fast_allocator()

or start Python with ``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4``.

Environment:
    JAXDL_ALLOCATOR          ``auto`` (default): tcmalloc when it is installed and the run is
                             CPU-only; ``tcmalloc``: also with a GPU/TPU plugin installed (an
                             error if none is found); ``system``: never re-execute.
    JAXDL_ALLOCATOR_LIBRARY  path of the library to preload instead of searching for tcmalloc.

tcmalloc comes from gperftools (Debian/Ubuntu ``apt-get install libtcmalloc-minimal4``,
Fedora ``dnf install gperftools-libs``, conda ``gperftools``). Only Linux with glibc is
handled; elsewhere these functions do nothing.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["find_tcmalloc", "allocator_in_use", "plan_reexec", "use_fast_allocator", "ReexecPlan",
           "ENV_CHOICE", "ENV_LIBRARY", "ENV_GUARD", "CHOICES"]

ENV_CHOICE = "JAXDL_ALLOCATOR"
ENV_LIBRARY = "JAXDL_ALLOCATOR_LIBRARY"
ENV_GUARD = "JAXDL_ALLOCATOR_REEXECUTED"  # set in the re-executed process: never re-execute twice
CHOICES = ("auto", "tcmalloc", "system")

_TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so")
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
             "/usr/local/lib", "/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu")
# Accelerator plugins: with one installed, JAX's default device is not the CPU, and the
# host-allocator gain measured on CPU does not carry over, so ``auto`` leaves such runs alone.
_ACCELERATOR_MODULES = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin",
                        "libtpu")


def find_tcmalloc(search_dirs: Sequence[str] = _LIB_DIRS) -> str | None:
    """Path of an installed tcmalloc shared library (the ``minimal`` build first), or None."""
    for directory in search_dirs:
        for name in _TCMALLOC_NAMES:
            path = Path(directory) / name
            if path.is_file():
                return str(path)
    for stem in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(stem)  # a soname such as libtcmalloc_minimal.so.4
        if found:
            for directory in search_dirs:
                if (Path(directory) / found).is_file():
                    return str(Path(directory) / found)
            return found  # the dynamic loader resolves a bare soname itself
    return None


def allocator_in_use(maps: str | None = None) -> str:
    """``tcmalloc``, ``jemalloc``, ``mimalloc`` when that library is mapped into this process
    (read from /proc/self/maps, or the given text of such a file), else ``system``."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return "system"
    for name in ("tcmalloc", "jemalloc", "mimalloc"):
        if f"lib{name}" in maps:
            return name
    return "system"


@dataclass(frozen=True)
class ReexecPlan:
    """What :func:`use_fast_allocator` will do: re-execute with ``library`` preloaded, or not (``reason``)."""

    reexec: bool
    reason: str
    library: str | None = None


def _accelerator_installed() -> bool:
    return any(importlib.util.find_spec(name) is not None for name in _ACCELERATOR_MODULES)


def plan_reexec(env: Mapping[str, str], *, system: str, libc: str, maps: str, argv: Sequence[str],
                find=find_tcmalloc, accelerator_installed=_accelerator_installed) -> ReexecPlan:
    """Decide whether to re-execute (a pure function of its inputs, so it can be tested).

    ``env`` is the environment, ``system``/``libc`` what ``platform.system()`` and
    ``platform.libc_ver()[0]`` say, ``maps`` the text of /proc/self/maps, ``argv`` the
    interpreter's original command line. Raises ValueError for a bad ``JAXDL_ALLOCATOR``
    or an explicit request that cannot be met.
    """
    choice = env.get(ENV_CHOICE, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ENV_CHOICE}={env.get(ENV_CHOICE)!r} is not one of {', '.join(CHOICES)}; "
                         f"unset it or choose one of those")
    if choice == "system":
        return ReexecPlan(False, f"{ENV_CHOICE}=system")
    if env.get(ENV_GUARD):
        return ReexecPlan(False, "already re-executed once")
    if system != "Linux" or libc != "glibc":
        return ReexecPlan(False, f"only Linux with glibc is handled (this is {system}, {libc or 'unknown libc'})")
    library = env.get(ENV_LIBRARY) or None
    if library is None and allocator_in_use(maps) != "system":
        return ReexecPlan(False, f"{allocator_in_use(maps)} is already loaded")
    if library is not None and Path(library).name in maps:
        return ReexecPlan(False, f"{library} is already loaded")
    if len(argv) < 2 or argv[-1] == "-":  # a REPL, or a program read from stdin: cannot be run again
        return ReexecPlan(False, "no command line to re-execute (interactive interpreter or stdin)")
    if choice == "auto" and library is None:
        platforms = env.get("JAX_PLATFORMS", "").strip()
        if platforms and platforms.split(",")[0].strip() != "cpu":
            return ReexecPlan(False, f"JAX_PLATFORMS={platforms}: not a CPU run")
        if not platforms and accelerator_installed():
            return ReexecPlan(False, "a GPU/TPU plugin is installed (set JAXDL_ALLOCATOR=tcmalloc to use it anyway)")
    if library is None:
        library = find()
        if library is None:
            if choice == "tcmalloc":
                raise ValueError(f"{ENV_CHOICE}=tcmalloc but no tcmalloc library was found; install it "
                                 "(apt-get install libtcmalloc-minimal4) or set "
                                 f"{ENV_LIBRARY} to its path")
            return ReexecPlan(False, "tcmalloc is not installed (apt-get install libtcmalloc-minimal4)")
    elif "/" in library and not Path(library).is_file():
        raise ValueError(f"{ENV_LIBRARY}={library} is not a file; give the path of a shared library or unset it")
    return ReexecPlan(True, f"preloading {library}", library)


def preload_env(env: Mapping[str, str], library: str) -> dict[str, str]:
    """A copy of ``env`` with ``library`` first in LD_PRELOAD and the re-execution guard set."""
    out = dict(env)
    rest = out.get("LD_PRELOAD", "").strip()
    out["LD_PRELOAD"] = f"{library} {rest}".strip() if rest else library
    out[ENV_GUARD] = "1"
    return out


def use_fast_allocator() -> ReexecPlan:
    """Re-execute this command with tcmalloc preloaded when that helps and is possible (see the
    module doc); returns the plan when it does not re-execute. Call it before importing jax:
    whatever ran before the call runs again in the new process."""
    plan = plan_reexec(os.environ, system=platform.system(), libc=platform.libc_ver()[0],
                       maps=_read_maps(), argv=list(getattr(sys, "orig_argv", [])))
    if plan.reexec:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, list(sys.orig_argv), preload_env(os.environ, plan.library))
    return plan


def _read_maps() -> str:
    try:
        return Path("/proc/self/maps").read_text()
    except OSError:
        return ""
