"""Throughput benchmark: ``jaxdl bench`` and ``experiments/benchmark.py``.

For each (model, batch size, dtype): training images/s (the library's ``train_step``, SGD with
momentum, donated state) and inference images/s (``predict_step``), compile time (XLA, AOT
``lower().compile()``), memory, and achieved FLOP/s from XLA's cost analysis
(``compiled.cost_analysis()["flops"]`` per step divided by the measured step time) as a
fraction of the device's peak.

Memory: on GPU/TPU ``device.memory_stats()["peak_bytes_in_use"]``; on CPU that is unavailable,
so the figures are XLA's buffer plan (``compiled.memory_analysis()``: arguments + outputs + temp
bytes of the step) and the process's peak resident set (``ru_maxrss``, which only grows over a
run: it bounds the largest configuration measured so far, not each one).

``remat=True`` turns on the model's rematerialisation switch (:func:`jaxdl.models.remat_field`:
``remat`` of the residual families and MobileNet v2, DenseNet's ``memory_efficient``), so the
same row with and without it shows what recomputation saves in XLA's temp bytes and costs in
FLOPs and time. ``compile_only=True`` stops after compiling the train step (compile time, FLOPs
and the memory plan; no timed steps, no inference), enough for memory figures of big models.

Peak FLOP/s: a table of dense bf16 / fp32 tensor-core peaks for known GPUs (vendor data
sheets, SXM parts). CPU: an estimate, ``cores x clock x FLOPs/cycle``, with 32 float32
FLOPs/cycle/core (two 256-bit FMA pipes: 2 x 8 lanes x 2) and the clock from /proc/cpuinfo;
say so wherever it is quoted.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import models, optim
from jaxdl.errors import ConfigError
from jaxdl.train.losses import get_loss
from jaxdl.train.state import create_train_state
from jaxdl.train.steps import predict_step, train_step

__all__ = ["benchmark", "benchmark_one", "cpu_description", "device_peak_flops", "source_revision", "speed_switches",
           "DTYPES"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

# Dense peak TFLOP/s (no sparsity) from NVIDIA data sheets: (bf16/fp16 tensor core, fp32 non-tensor).
GPU_PEAK_TFLOPS = {
    "H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5), "L4": (121.0, 30.3),
    "A10": (125.0, 31.2), "V100": (125.0, 15.7), "T4": (65.0, 8.1), "RTX 4090": (165.2, 82.6),
}
CPU_FLOPS_PER_CYCLE = 32  # float32, two 256-bit FMA pipes per core (see the module docstring)


def _cpu_clock_hz() -> float | None:
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.lower().startswith("cpu mhz")]
        return max(mhz) * 1e6 if mhz else None
    except OSError:
        return None


def device_peak_flops(device: Any, dtype: str) -> tuple[float | None, str]:
    """(peak FLOP/s or None, how it was obtained) for ``device`` at ``dtype``."""
    kind = getattr(device, "device_kind", "")
    if device.platform == "gpu":
        for name, (half, single) in GPU_PEAK_TFLOPS.items():
            if name.lower() in kind.lower():
                peak = single if dtype == "float32" else half
                return peak * 1e12, f"{name} data sheet, dense {'fp32' if dtype == 'float32' else dtype} {peak} TFLOP/s"
        return None, f"unknown GPU {kind!r}: add it to GPU_PEAK_TFLOPS"
    if device.platform == "cpu":
        clock = _cpu_clock_hz()
        cores = os.cpu_count() or 1
        if clock is None:
            return None, "CPU clock unknown"
        return (cores * clock * CPU_FLOPS_PER_CYCLE,
                f"estimate: {cores} cores x {clock / 1e9:.2f} GHz x {CPU_FLOPS_PER_CYCLE} fp32 FLOP/cycle")
    return None, f"no peak table for {device.platform}"


def _flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def _memory(compiled) -> dict[str, int] | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if m is None:
        return None
    return {"argument_bytes": int(m.argument_size_in_bytes), "output_bytes": int(m.output_size_in_bytes),
            "temp_bytes": int(m.temp_size_in_bytes)}


def _time_steps(run, steps: int, repeats: int) -> list[float]:
    """Seconds per step of ``steps`` back-to-back calls (dispatch overlaps), ``repeats`` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = None
        for _ in range(steps):
            out = run()
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / steps)
    return times


def benchmark_one(name: str, batch_size: int, dtype: str = "float32", *, input_size: int | None = None,
                  num_classes: int = 10, steps: int = 5, repeats: int = 3, warmup: int = 1,
                  model_options: dict[str, Any] | None = None, inference: bool = True, remat: bool = False,
                  compile_only: bool = False) -> dict[str, Any]:
    """Measure one configuration; returns a JSON-able dict (see the module docstring)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    info = models.info(name)
    h, w, c = info.input_shape
    if input_size is not None:
        h = w = int(input_size)
    options = dict(model_options or {})
    if dtype != "float32":
        options["dtype"] = DTYPES[dtype]
    if remat:
        options.update(models.remat_options(name))
    model = models.create(name, num_classes=num_classes, **options)
    tx = optim.optimizer("sgd", 0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.normal(size=(batch_size, h, w, c)), jnp.float32),
             "label": jnp.asarray(rng.integers(0, num_classes, batch_size), jnp.int32)}
    state = create_train_state(model, tx, input_shape=(h, w, c))
    device = jax.devices()[0]
    result: dict[str, Any] = {"model": name, "batch_size": batch_size, "dtype": dtype, "input_shape": [h, w, c],
                              "model_options": {k: str(v) for k, v in (model_options or {}).items()},
                              "remat": bool(remat),
                              "num_params": int(models.count_params(state.params)),
                              "device": f"{device.platform}: {getattr(device, 'device_kind', '')}"}
    peak, peak_source = device_peak_flops(device, dtype)
    result["peak_flops"], result["peak_source"] = peak, peak_source

    step = jax.jit(functools.partial(train_step, loss_fn=get_loss("cross_entropy")), donate_argnums=0)
    start = time.perf_counter()
    lowered = step.lower(state, batch)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    result["train_trace_seconds"] = lowered_at - start
    result["train_compile_seconds"] = time.perf_counter() - lowered_at
    flops = _flops(compiled)
    result["train_flops_per_step"] = flops
    result["train_memory"] = _memory(compiled)
    if compile_only:
        result["host_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return result
    holder = {"state": state}

    def run_train():
        holder["state"], metrics = compiled(holder["state"], batch)
        return metrics["loss"]

    for _ in range(warmup):
        jax.block_until_ready(run_train())
    times = _time_steps(run_train, steps, repeats)
    per_step = statistics.median(times)
    result["train_step_seconds"] = times
    result["train_images_per_second"] = batch_size / per_step
    result["train_images_per_second_best"] = batch_size / min(times)
    if flops:
        result["train_flops_per_second"] = flops / per_step
        result["train_utilisation"] = flops / per_step / peak if peak else None

    if inference:
        params_state = holder["state"]
        predict = jax.jit(predict_step)
        start = time.perf_counter()
        compiled_predict = predict.lower(params_state, batch["image"]).compile()
        result["inference_compile_seconds"] = time.perf_counter() - start
        iflops = _flops(compiled_predict)

        def run_predict():
            return compiled_predict(params_state, batch["image"])

        for _ in range(warmup):
            jax.block_until_ready(run_predict())
        times = _time_steps(run_predict, steps, repeats)
        result["inference_step_seconds"] = times
        result["inference_images_per_second"] = batch_size / statistics.median(times)
        if iflops:
            result["inference_flops_per_second"] = iflops / statistics.median(times)
            result["inference_utilisation"] = iflops / statistics.median(times) / peak if peak else None
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        # The allocator's high-water mark cannot be reset from jax: it covers this row and every
        # row measured before it in the process. The per-row figure is ``train_memory`` (XLA's plan).
        result["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
        result["device_peak_scope"] = "process so far (this row and the rows before it)"
    result["host_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


# Vector ISA extensions that decide which kernels XLA, oneDNN and friends pick; a CPU figure is only
# comparable with another on the same generation (the ResNet-18 ratio to torch differs between AVX2
# and AVX-512 hosts, docs/performance.md).
CPU_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                 "amx_tile", "amx_bf16")


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> dict[str, Any]:
    """The host CPU as a benchmark JSON records it: ``model_name``, ``family``/``model`` (x86
    ``cpu family`` / ``model`` numbers, which tell generations apart when the name does not, as
    "AMD EPYC" on a VM) and ``isa`` (which of :data:`CPU_ISA_FLAGS` it has). Without a readable
    ``cpuinfo`` (not Linux) only ``model_name`` from :mod:`platform` is given."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        return {"model_name": platform.processor() or platform.machine()}
    flags = set(fields.get("flags", "").split())
    return {"model_name": fields.get("model name", platform.processor() or platform.machine()),
            "family": fields.get("cpu family"), "model": fields.get("model"),
            "isa": [f for f in CPU_ISA_FLAGS if f in flags]}


def speed_switches() -> dict[str, str]:
    """The environment switches that change CPU speed, as a benchmark JSON records them (unset conv
    switches mean on) and the host allocator this process runs with (jaxdl.runtime)."""
    from jaxdl.runtime import allocator_in_use

    return {"fast_conv": os.environ.get("JAXDL_FAST_CONV", "1"), "winograd": os.environ.get("JAXDL_WINOGRAD", "1"),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""), "allocator": allocator_in_use()}


def source_revision(root: str | os.PathLike | None = None) -> str | None:
    """The git commit of the jaxdl checkout that is running, as a benchmark JSON records it, with
    ``+dirty`` appended when tracked files differ from it; None when jaxdl does not run from the top of
    a git checkout (an installed wheel, a copy) or git is missing. ``root``: the checkout to read
    (default: the folder holding the ``jaxdl`` package)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():  # e.g. site-packages inside someone's repository
        return None
    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    changes = git("status", "--porcelain", "--untracked-files=no")
    return sha + ("+dirty" if changes else "")


def benchmark(model_names: Sequence[str], batch_sizes: Sequence[int], dtypes: Sequence[str] = ("float32",),
              remat: Sequence[bool] = (False,), **kw: Any) -> dict[str, Any]:
    """Every combination (``remat``: the settings to measure, e.g. ``(False, True)``); returns
    ``{"environment": ..., "results": [...]}``."""
    rows = []
    for name in model_names:
        for b in batch_sizes:
            for d in dtypes:
                for r in remat:
                    rows.append(benchmark_one(name, int(b), d, remat=bool(r), **kw))
    device = jax.devices()[0]
    return {
        "environment": {"jax": jax.__version__, "backend": device.platform, "device_kind": getattr(device, "device_kind", ""),
                        "devices": jax.device_count(), "cpu": platform.processor() or platform.machine(),
                        "cpu_description": cpu_description(), "cpu_count": os.cpu_count(), **speed_switches(),
                        "jaxdl_revision": source_revision(),
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        "results": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{'model':<22} {'batch':>5} {'dtype':>8} {'remat':>5} {'train img/s':>11} {'infer img/s':>11} "
             f"{'compile s':>9} {'GFLOP/step':>10} {'GFLOP/s':>8} {'util':>6} {'temp MiB':>8}"]
    def number(value, scale=1.0, digits=1):  # "-" where nothing was measured (compile-only rows)
        return "-" if value is None else f"{value / scale:.{digits}f}"

    for r in report["results"]:
        util = r.get("train_utilisation")
        mem = (r.get("train_memory") or {}).get("temp_bytes")
        lines.append(f"{r['model']:<22} {r['batch_size']:>5} {r['dtype']:>8} {'yes' if r.get('remat') else 'no':>5} "
                     f"{number(r.get('train_images_per_second')):>11} "
                     f"{number(r.get('inference_images_per_second')):>11} {r['train_compile_seconds']:>9.1f} "
                     f"{number(r.get('train_flops_per_step'), 1e9):>10} "
                     f"{number(r.get('train_flops_per_second'), 1e9):>8} "
                     f"{'' if util is None else f'{util:.1%}':>6} {number(mem, 2**20, 0):>8}")
    return "\n".join(lines)


def run_bench_command(models_arg: str, batch_sizes: str, dtypes: str, input_size: int | None, steps: int,
                      repeats: int, out: str | None, model_options: dict[str, Any] | None = None,
                      remat: str = "off", compile_only: bool = False) -> dict[str, Any]:
    """``jaxdl bench``: parse the comma lists, run, print the table, write JSON atomically."""
    from jaxdl.train.io import write_json_atomic

    names = [m.strip() for m in models_arg.split(",") if m.strip()]
    for n in names:
        models.info(n)  # unknown names fail before anything runs
    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--batch-sizes must be comma-separated whole numbers, got {batch_sizes!r}") from None
    kinds = [d.strip() for d in dtypes.split(",") if d.strip()]
    for d in kinds:
        if d not in DTYPES:
            raise ConfigError(f"--dtypes: {d!r} is not one of {', '.join(DTYPES)}")
    settings = {"off": (False,), "on": (True,), "both": (False, True)}
    if remat not in settings:
        raise ConfigError(f"--remat must be off, on or both; got {remat!r}")
    if remat != "off":
        for n in names:        # refuse before anything is measured
            models.remat_options(n)
    report = benchmark(names, sizes, kinds, settings[remat], input_size=input_size, steps=steps, repeats=repeats,
                       model_options=model_options, compile_only=compile_only)
    print(format_table(report))
    if out:
        write_json_atomic(out, report)
        print(f"wrote {out}")
    return report
