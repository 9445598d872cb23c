"""jaxdl.runtime: choosing and preloading a faster host allocator by re-executing the command once."""

import ctypes.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from jaxdl import runtime

ROOT = Path(__file__).resolve().parents[1]
LINUX_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
TCMALLOC = runtime.find_tcmalloc() if LINUX_GLIBC else None
# .ci/run installs libtcmalloc-minimal4 and then sets JAXDL_EXPECT_TCMALLOC=1: there these tests
# must run (and fail if the library is not found), not skip.
NEEDS_TCMALLOC = pytest.mark.skipif(TCMALLOC is None and not os.environ.get("JAXDL_EXPECT_TCMALLOC"),
                                    reason="tcmalloc not installed (apt-get install libtcmalloc-minimal4)")
NEEDS_GLIBC = pytest.mark.skipif(not LINUX_GLIBC, reason="allocator preloading is for Linux with glibc")
MAPS_GLIBC = "7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
MAPS_TC = MAPS_GLIBC + "7f02-7f03 r-xp 0 08:01 2 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10\n"
ARGV = ["/usr/bin/python3", "/venv/bin/jaxdl", "train"]


def plan(env=None, *, system="Linux", libc="glibc", maps=MAPS_GLIBC, argv=ARGV, found="/lib/libtcmalloc_minimal.so.4",
         accelerator=False):
    return runtime.plan_reexec(env or {}, system=system, libc=libc, maps=maps, argv=argv,
                               find=lambda: found, accelerator_installed=lambda: accelerator)


def test_plan_preloads_tcmalloc_on_a_cpu_only_linux_run():
    p = plan()
    assert p.reexec and p.library == "/lib/libtcmalloc_minimal.so.4"


@pytest.mark.parametrize("kwargs, reason", [
    (dict(env={"JAXDL_ALLOCATOR": "system"}), "JAXDL_ALLOCATOR=system"),
    (dict(env={runtime.ENV_GUARD: "1"}), "already re-executed"),
    (dict(system="Darwin", libc=""), "only Linux with glibc"),
    (dict(libc="musl"), "only Linux with glibc"),
    (dict(maps=MAPS_TC), "tcmalloc is already loaded"),
    (dict(argv=["/usr/bin/python3"]), "interactive"),
    (dict(argv=["/usr/bin/python3", "-"]), "stdin"),
    (dict(env={"JAX_PLATFORMS": "cuda"}), "not a CPU run"),
    (dict(accelerator=True), "GPU/TPU plugin"),
    (dict(found=None), "not installed"),
])
def test_plan_leaves_the_process_alone(kwargs, reason):
    p = plan(**kwargs)
    assert not p.reexec and p.library is None
    assert reason in p.reason


def test_plan_explicit_choice_and_library():
    # An explicit tcmalloc request overrides the accelerator and JAX_PLATFORMS checks ...
    assert plan({"JAXDL_ALLOCATOR": "tcmalloc"}, accelerator=True).reexec
    assert plan({"JAXDL_ALLOCATOR": "TCMalloc", "JAX_PLATFORMS": "cuda"}).reexec
    assert plan({"JAX_PLATFORMS": "cpu"}, accelerator=True).reexec  # CPU asked for: a plugin does not matter
    # ... and is an error when nothing can be found; so are a bad choice and a missing library file.
    with pytest.raises(ValueError, match="no tcmalloc library was found"):
        plan({"JAXDL_ALLOCATOR": "tcmalloc"}, found=None)
    with pytest.raises(ValueError, match="JAXDL_ALLOCATOR='fast' is not one of auto, tcmalloc, system"):
        plan({"JAXDL_ALLOCATOR": "fast"})
    with pytest.raises(ValueError, match="is not a file"):
        plan({runtime.ENV_LIBRARY: "/nonexistent/libfoo.so"})
    # A given library replaces the search, and counts as loaded only when it is mapped.
    p = plan({runtime.ENV_LIBRARY: "libanl.so.1"}, found=None, accelerator=True)
    assert p.reexec and p.library == "libanl.so.1"
    assert not plan({runtime.ENV_LIBRARY: "libanl.so.1"}, maps=MAPS_GLIBC + "x /lib/libanl.so.1\n").reexec


def test_preload_env_prepends_and_sets_the_guard():
    env = runtime.preload_env({"LD_PRELOAD": "/lib/libother.so", "PATH": "/bin"}, "/lib/libtc.so")
    assert env["LD_PRELOAD"] == "/lib/libtc.so /lib/libother.so" and env["PATH"] == "/bin"
    assert env[runtime.ENV_GUARD] == "1"
    assert runtime.preload_env({}, "/lib/libtc.so")["LD_PRELOAD"] == "/lib/libtc.so"


def test_allocator_in_use_reads_the_maps():
    assert runtime.allocator_in_use(MAPS_GLIBC) == "system"
    assert runtime.allocator_in_use(MAPS_TC) == "tcmalloc"
    assert runtime.allocator_in_use("x /usr/lib/libjemalloc.so.2\n") == "jemalloc"
    assert runtime.allocator_in_use() in ("system", "tcmalloc", "jemalloc", "mimalloc")


SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
print("started", flush=True)  # runs twice when the command is re-executed
from jaxdl import runtime
plan = runtime.use_fast_allocator()
maps = open("/proc/self/maps").read()
print(json.dumps({{"argv": sys.argv[1:], "reason": plan.reason, "allocator": runtime.allocator_in_use(),
                   "preload": os.environ.get("LD_PRELOAD", ""), "guard": os.environ.get(runtime.ENV_GUARD),
                   "anl": "libanl.so" in maps}}))
"""


def run_script(tmp_path, env_extra, *args):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", runtime.ENV_GUARD, runtime.ENV_LIBRARY,
                                                            runtime.ENV_CHOICE)}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    return lines, json.loads(lines[-1])


@NEEDS_GLIBC
def test_use_fast_allocator_really_reexecutes_with_the_library_preloaded(tmp_path):
    """A real re-execution with a library every glibc system has (libanl), which plain Python does not load:
    the command line survives, the library is mapped into the new process, and it happens once."""
    lib = ctypes.util.find_library("anl")
    assert lib, "glibc's libanl should be present"
    lines, out = run_script(tmp_path, {runtime.ENV_LIBRARY: lib}, "a b", "--flag")
    assert lines.count("started") == 2  # the first process, then the re-executed one
    assert out["argv"] == ["a b", "--flag"] and out["anl"] and out["guard"] == "1"
    assert out["preload"].split()[0] == lib and "already re-executed" in out["reason"]
    lines, out = run_script(tmp_path, {runtime.ENV_LIBRARY: lib, "JAXDL_ALLOCATOR": "system"})
    assert lines.count("started") == 1 and not out["anl"] and out["preload"] == ""


@NEEDS_GLIBC
@NEEDS_TCMALLOC
def test_use_fast_allocator_loads_tcmalloc(tmp_path):
    assert TCMALLOC, "JAXDL_EXPECT_TCMALLOC is set (.ci/run installed libtcmalloc-minimal4) but find_tcmalloc() found nothing"
    lines, out = run_script(tmp_path, {"JAX_PLATFORMS": "cpu"})
    assert lines.count("started") == 2 and out["allocator"] == "tcmalloc"
    lines, out = run_script(tmp_path, {"JAX_PLATFORMS": "cpu", "JAXDL_ALLOCATOR": "system"})
    assert lines.count("started") == 1 and out["allocator"] == "system"


@NEEDS_GLIBC
@NEEDS_TCMALLOC
def test_jaxdl_command_runs_under_tcmalloc_and_bad_choice_is_a_usage_error(tmp_path):
    """``python -m jaxdl`` re-executes under tcmalloc (the bench report records it); a bad
    JAXDL_ALLOCATOR is one error line with exit code 2."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", runtime.ENV_GUARD)}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "jaxdl", "bench", "--models", "lenet5", "--batch-sizes", "2",
                           "--steps", "1", "--repeats", "1", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["environment"]["allocator"] == "tcmalloc"
    env["JAXDL_ALLOCATOR"] = "fast"
    proc = subprocess.run([sys.executable, "-m", "jaxdl", "models"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "JAXDL_ALLOCATOR='fast' is not one of" in proc.stderr
