"""Forward / backward time of one convolution: stock ``lax.conv_general_dilated``, jaxdl's custom VJP and,
for 3x3 shapes where ``jaxdl.nn.winograd.tile_size`` picks a tile, the two Winograd paths (all three products,
and the kernel gradient only, ``wino-dW``); the report names the one ``jaxdl.nn.Conv`` takes.

Command (the issue-7 case: 3x3, 128 -> 128 channels, batch 64 at 32x32, float32):
    python experiments/conv_cpu.py --out docs/conv_cpu.json
Command (the 3x3 convs of ResNet-18 with the CIFAR stem, stages 1-4, batch 64):
    python experiments/conv_cpu.py --shapes 32x64,16x128,8x256,4x512 --out docs/conv_cpu_resnet18.json
Command (the thin 3x3 convs of ResNet-20, stages 1-3, batch 128):
    python experiments/conv_cpu.py --batch 128 --shapes 32x16,16x32,8x64 --out docs/conv_cpu_thin.json
Command (thin convs with unequal channels, the ``winograd.kernel_grad_only`` rule):
    python experiments/conv_cpu.py --batch 128 --shapes 32x32x16,32x16x32,32x32,32x16x64,32x16 \
        --out docs/conv_cpu_thin_2.json
Result: docs/performance.md ("Fast CPU convolutions"). Backward = input + kernel gradient
(jitted vjp of the conv, its forward dead-code-eliminated); kernel / input gradient also alone.
Variants run interleaved, ``--repeats`` times; medians reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def get_config() -> dict:
    """3x3 convolution, 128 -> 128 channels, stride 1, SAME padding, batch 64, 32x32 (a ResNet stage-2 conv)."""
    return {"batch": 64, "size": 32, "channels": 128, "kernel": 3, "repeats": 5}


def measure(cfg: dict) -> dict:
    """Time one conv shape (``cfg``: batch, size, channels, kernel, repeats); prints and returns its report."""
    import jax
    import jax.numpy as jnp

    from jaxdl.nn.fast_conv import _forward, conv2d
    from jaxdl.nn.winograd import kernel_grad_only, tile_size, winograd_conv2d, winograd_kernel_grad_conv2d

    rng = np.random.default_rng(0)
    n, s, c, k = cfg["batch"], cfg["size"], cfg["channels"], cfg["kernel"]
    co = cfg.get("out_channels") or c
    x = jnp.asarray(rng.normal(size=(n, s, s, c)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, c, co)) * 0.05, jnp.float32)
    dy = jnp.asarray(rng.normal(size=(n, s, s, co)), jnp.float32)
    p = (k - 1) // 2
    args_ = ((1, 1), ((p, p), (p, p)), (1, 1), 1)
    impls = {"stock": lambda x_, w_: _forward(x_, w_, *args_), "custom": lambda x_, w_: conv2d(x_, w_, *args_)}
    tile = tile_size((s, s), c, co, jnp.float32) if k == 3 else None
    if tile is not None:
        impls[f"winograd F({tile}x{tile})"] = lambda x_, w_: winograd_conv2d(x_, w_, args_[1], tile)
        impls[f"wino-dW F({tile}x{tile})"] = lambda x_, w_: winograd_kernel_grad_conv2d(x_, w_, args_[1], tile)
    taken = ("custom" if tile is None else f"wino-dW F({tile}x{tile})" if kernel_grad_only(co)
             else f"winograd F({tile}x{tile})")
    fns = {}
    for name, f in impls.items():
        fns[f"{name} forward"] = (jax.jit(f), (x, w))
        fns[f"{name} backward (dx + dW)"] = (jax.jit(lambda x_, w_, d, f=f: jax.vjp(f, x_, w_)[1](d)), (x, w, dy))
        fns[f"{name} dW only"] = (jax.jit(lambda x_, w_, d, f=f: jax.vjp(lambda w2: f(x_, w2), w_)[1](d)), (x, w, dy))
        fns[f"{name} dx only"] = (jax.jit(lambda x_, w_, d, f=f: jax.vjp(lambda x2: f(x2, w_), x_)[1](d)), (x, w, dy))
    for fn, a in fns.values():
        jax.block_until_ready(fn(*a))
    times = {label: [] for label in fns}
    for _ in range(cfg["repeats"]):
        for label, (fn, a) in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*a))
            times[label].append(time.perf_counter() - start)
    flops = 2 * n * s * s * c * co * k * k
    print(f"conv {k}x{k} {c}->{co}, batch {n} at {s}x{s}: {flops / 1e9:.2f} GFLOP per pass; "
          f"{cfg['repeats']} interleaved repeats, median seconds")
    report = {"config": cfg, "jax": jax.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "seconds": {}, "flops_per_pass": flops, "jaxdl_conv_path": taken}
    print(f"  jaxdl.nn.Conv takes: {taken}")
    for label, ts in times.items():
        med = statistics.median(ts)
        report["seconds"][label] = ts
        print(f"  {label:<36} {med:8.3f} s   ({flops / med / 1e9:6.1f} GFLOP/s per pass)")
    for part in ("backward (dx + dW)", "dW only"):
        for name in list(impls)[1:]:
            ratio = statistics.median(times[f"stock {part}"]) / statistics.median(times[f"{name} {part}"])
            key = f"speedup {part}" if name == "custom" else f"speedup {name} {part}"
            report[key] = ratio
            print(f"  {name} speed-up, {part}: {ratio:.2f}x")
    fwd = statistics.median(times["stock forward"])
    print(f"  stock backward / forward: {statistics.median(times['stock backward (dx + dW)']) / fwd:.1f}x; "
          f"custom backward / forward: {statistics.median(times['custom backward (dx + dW)']) / fwd:.1f}x")
    return report


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """``"32x64,16x32x16"`` -> ``[(32, 64, 64), (16, 32, 16)]`` (spatial size, input and output channels)."""
    try:
        shapes = [tuple(int(v) for v in item.strip().lower().split("x")) for item in text.split(",")]
    except ValueError:
        shapes = []
    if not shapes or any(len(t) not in (2, 3) or min(t) < 1 for t in shapes):
        raise ValueError(f"--shapes wants SIZExCHANNELS or SIZExCINxCOUT items like 32x64,16x32x16, got {text!r}")
    return [t if len(t) == 3 else (*t, t[1]) for t in shapes]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="conv forward/backward timing, stock vs custom VJP")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--shapes", default=None, metavar="SxC,...",
                        help="each conv as SIZExC (C -> C) or SIZExCINxCOUT, e.g. 32x64,16x32x16")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 64)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    cfg = get_config()
    if args.smoke:
        cfg.update(batch=2, size=8, channels=8, repeats=1)
    if args.repeats:
        cfg["repeats"] = args.repeats
    if args.batch is not None:
        if args.batch < 1:
            print(f"conv_cpu: error: --batch must be at least 1, got {args.batch}", file=sys.stderr)
            return 2
        cfg["batch"] = args.batch
    shapes = [(cfg["size"], cfg["channels"], cfg["channels"])]
    if args.shapes:
        try:
            shapes = parse_shapes(args.shapes)
        except ValueError as err:
            print(f"conv_cpu: error: {err}", file=sys.stderr)
            return 2
    reports = [measure({**cfg, "size": s, "channels": c, "out_channels": co}) for s, c, co in shapes]
    report = reports[0] if len(reports) == 1 else {"jax": reports[0]["jax"], "date": reports[0]["date"],
                                                  "shapes": reports}
    if args.out:
        out = Path(args.out)
        if out.suffix != ".json":
            out = out / "conv_cpu.json"
        from jaxdl.train.io import write_json_atomic
        write_json_atomic(out, report)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    sys.exit(main())
