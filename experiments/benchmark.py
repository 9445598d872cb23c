"""Throughput, compile time, memory and FLOP utilisation of chosen models (jaxdl.train.benchmark).

Command (CPU, the table in docs/performance.md):
    python experiments/benchmark.py --out docs/benchmark_cpu.json
Command (GPU):
    python experiments/benchmark.py --models resnet18,resnet50 --input-size 224 --batch-sizes 128,256 \\
        --dtypes float32,bfloat16 --out docs/benchmark_gpu.json
Command (remat memory table, CPU):
    python experiments/benchmark.py --models resnet50,densenet121 --input-size 224 --batch-sizes 32 \
        --remat both --compile-only --out docs/remat_memory_cpu.json
The same as ``jaxdl bench --models ... --batch-sizes ... --dtypes ... [--remat both] --out FILE``.
Result: docs/performance.md (measured images/s, compile s, GFLOP/s, utilisation, device, date).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxdl.cli import _key_values, _positive_int  # noqa: E402  (the CLI's argument types: same messages)


def get_config() -> dict:
    """CPU set: CIFAR-sized models at their native 32x32 (ResNet-18 with the CIFAR stem), batch 64, float32."""
    return {"models": "resnet20,resnet18", "batch_sizes": "64", "dtypes": "float32", "input_size": None,
            "steps": 3, "repeats": 3, "model_options": {}, "remat": "off"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="jaxdl throughput benchmark")
    parser.add_argument("--models", default=None, help="comma-separated registry names")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated, e.g. 64,128")
    parser.add_argument("--dtypes", default=None, help="comma-separated: float32, bfloat16, float16")
    parser.add_argument("--input-size", type=_positive_int, default=None)
    parser.add_argument("--steps", type=_positive_int, default=None)
    parser.add_argument("--repeats", type=_positive_int, default=None)
    parser.add_argument("--model-options", type=_key_values, default=None, metavar="K=V,...",
                        help="model overrides, as for jaxdl bench")
    parser.add_argument("--remat", default=None, choices=("off", "on", "both"),
                        help="rematerialisation off / on / a row each (memory table in docs/performance.md)")
    parser.add_argument("--compile-only", action="store_true", help="compile only: memory plan, FLOPs")
    parser.add_argument("--smoke", action="store_true", help="a tiny model, one step (used by the tests)")
    parser.add_argument("--out", default=None, help="JSON report (a file, or a folder for --smoke)")
    args = parser.parse_args(argv)  # a mistyped flag is a usage error (exit 2), not silently ignored
    cfg = get_config()
    if args.smoke:
        cfg.update(models="resnet20", batch_sizes="2", steps=1, repeats=1, model_options={"stage_sizes": (1, 1, 1)})
    for key in ("models", "batch_sizes", "dtypes", "input_size", "steps", "repeats", "remat", "model_options"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    out = args.out
    if out and not out.endswith(".json"):
        out = str(Path(out) / "benchmark.json")
    from jaxdl.errors import JaxdlError
    from jaxdl.train.benchmark import run_bench_command

    try:
        run_bench_command(cfg["models"], cfg["batch_sizes"], cfg["dtypes"], cfg["input_size"], cfg["steps"],
                          cfg["repeats"], out, cfg["model_options"] or None, remat=cfg["remat"],
                          compile_only=args.compile_only)
    except (JaxdlError, ValueError) as err:  # bad input (unknown model, dtype, batch size): one line, exit 2 (as the CLI)
        print(f"benchmark: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return 0


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc); recorded in the JSON
    sys.exit(main())
