"""jaxdl vs PyTorch training throughput on the same machine, in the same run, printing ratios.

Command (CPU, the issue-7 target: ResNet-18 with the CIFAR stem, 32x32, batch 64):
    python experiments/torch_side_by_side.py --out docs/torch_side_by_side_cpu.json
Command (CPU, a thin network: CIFAR ResNet-20, 16-64 channels, batch 128):
    python experiments/torch_side_by_side.py --models resnet20 --batch-size 128 --variants jaxdl,torch \\
        --out docs/torch_side_by_side_cpu_resnet20.json
Command (GPU: ResNet-50 at 224x224, bfloat16 / AMP, batch 256):
    python experiments/torch_side_by_side.py --models resnet50 --input-size 224 --batch-size 256 \\
        --dtype bfloat16 --out docs/torch_side_by_side_gpu.json
Result: see docs/performance.md (measured ratios, device, date).

Variants: jaxdl (``jaxdl.nn.Conv``: Winograd F(m x m, 3 x 3) for 3x3 stride-1 convs and the custom-VJP
conv for the rest), jaxdl without the Winograd path, jaxdl with stock ``flax.linen.Conv``
(``conv=nn.Conv``), PyTorch eager (NCHW), eager channels_last, ``torch.compile`` (channels_last),
and ``torch.autocast`` (AMP, on CPU too) for half precision. Every variant takes SGD+momentum steps on
one fixed random batch (data loading excluded); they run interleaved, ``--repeats`` times, so a
load change on a shared machine hits all of them; the median seconds per step is reported.
Models: the ImageNet ResNets of torchvision (``resnet18``, ``resnet50``, ...; with the CIFAR stem at inputs up
to 64 pixels) and the CIFAR ResNets of He et al. 2016 sec. 4.2 (``resnet20``, ``resnet32``, ``resnet44``,
``resnet56``, ``resnet110``), which torchvision lacks: :func:`torch_cifar_resnet` builds them here with
option A shortcuts, as jaxdl's registry does (same layers, same parameter count; tested).
By default every repeat of every variant runs in a fresh Python process (``--isolation process``):
JAX's and PyTorch's thread pools and the allocator state of one variant then cannot slow another,
and each variant takes two warm-up steps (compile, first execution) before it is timed.
``--isolation in-process`` runs them all in this process (compiling each once). ``--variants``
picks some (``jaxdl,torch``). ``--allocators tcmalloc,system`` runs every variant under both host
allocators (default: tcmalloc when installed, else glibc's; see jaxdl.runtime), and every row
records the allocator it ran with; ratios are to torch eager under glibc when that row exists
(PyTorch's default). The torch side is skipped with a message when torch is not installed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cifar_depth(name: str) -> int | None:
    """The depth of a CIFAR ResNet-(6n+2) name of jaxdl's registry (``resnet20`` -> 20), else None."""
    from jaxdl.models.resnet_cifar import CIFAR_RESNET_DEPTHS

    depth = name[len("resnet"):] if name.startswith("resnet") else ""
    return int(depth) if depth.isdigit() and int(depth) in CIFAR_RESNET_DEPTHS else None


def check_model(name: str) -> str | None:
    """None when both libraries can build ``name`` (the torch side only checked where torchvision is
    installed), else what is wrong, for a usage error."""
    import importlib.util

    from jaxdl import models

    if name not in models.available():
        return f"{name} is not a jaxdl model (list them with `jaxdl models`)"
    if cifar_depth(name) is None and importlib.util.find_spec("torchvision") is not None:
        import torchvision

        if not callable(getattr(torchvision.models, name, None)):
            return (f"{name} has no PyTorch twin here: choose a torchvision model of the same name (resnet18, "
                    f"resnet50, ...) or a CIFAR ResNet (resnet20, resnet32, resnet44, resnet56, resnet110)")
    return None


def torch_cifar_resnet(depth: int, num_classes: int = 10, stages: int | None = None):
    """He et al. 2016 sec. 4.2 CIFAR ResNet-(6n+2) in PyTorch, the network of jaxdl's ``resnet{depth}``.

    A 3x3 conv from the RGB input to 16 channels with BN and ReLU; three stages of ``n = (depth - 2) / 6``
    basic blocks (3x3 conv - BN - ReLU - 3x3 conv - BN, added to the shortcut, then ReLU) with 16, 32, 64
    channels, the first block of stages 2 and 3 at stride 2; option A shortcuts (every second pixel, zero
    channels appended after the input's; no parameters); global average pooling and a linear layer. Convs
    have no bias. ``stages`` overrides ``n`` (the smoke run uses 1).
    """
    import torch
    from torch import nn

    n = stages if stages is not None else (depth - 2) // 6

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            s = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
            if self.extra:
                s = nn.functional.pad(s, (0, 0, 0, 0, 0, self.extra))
            return torch.relu(y + s)

    layers: list = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(n):
            layers.append(Block(cin, width, 2 if stage > 0 and block == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    model = nn.Sequential(*layers)
    for module in model.modules():  # He initialisation, as jaxdl's ResNet (fan-out, normal)
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


def get_config() -> dict:
    """ResNet-18 (CIFAR stem: 3x3 stride-1 conv, no max-pool), 32x32x3 input, batch 64, float32, CPU."""
    return {"models": ["resnet18"], "input_size": 32, "batch_size": 64, "dtype": "float32", "steps": 5,
            "repeats": 5, "compile": True}


def smoke_config() -> dict:
    return {"models": ["resnet18"], "input_size": 16, "batch_size": 4, "dtype": "float32", "steps": 1,
            "repeats": 1, "compile": False, "smoke": True}


def jaxdl_step(name: str, batch: int, size: int, dtype: str, conv: str, smoke: bool) -> Callable[[], None]:
    """``conv``: "jaxdl" (``jaxdl.nn.Conv``: Winograd + custom VJP on CPU), "no-winograd" (custom VJP
    only) or "stock" (``flax.linen.Conv``)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from jaxdl import models, optim
    from jaxdl.train import create_train_state, get_loss, train_step

    options = {"num_classes": 10}
    if size <= 64 and "resnet" in name and cifar_depth(name) is None:
        options["stem"] = "cifar"
    if conv == "stock":
        options["conv"] = nn.Conv
    elif conv == "no-winograd":
        from jaxdl.nn.fast_conv import FastConv

        options["conv"] = functools.partial(FastConv, winograd=False)
    if dtype != "float32":
        options["dtype"] = jnp.bfloat16 if dtype == "bfloat16" else jnp.float16
    if smoke:
        options["stage_sizes"] = (1, 1, 1) if cifar_depth(name) is not None else (1, 1, 1, 1)
    model = models.create(name, **options)
    state = create_train_state(model, optim.optimizer("sgd", 0.01, momentum=0.9), input_shape=(size, size, 3))
    rng = np.random.default_rng(0)
    data = {"image": jnp.asarray(rng.normal(size=(batch, size, size, 3)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, 10, batch), jnp.int32)}
    step = jax.jit(functools.partial(train_step, loss_fn=get_loss("cross_entropy")), donate_argnums=0)
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], data)
        return metrics["loss"]

    def run_steps(n):
        out = None
        for _ in range(n):
            out = run()
        jax.block_until_ready(out)

    return run_steps


def torch_precision(dtype: str) -> tuple[bool, str, bool]:
    """(autocast on, autocast dtype name, loss scaler on) for ``--dtype``, on every device.

    Half precision is autocast (AMP) on CPU as on GPU, so torch computes in the dtype jaxdl does
    (jaxdl's bfloat16 is bfloat16 compute on CPU too; a float32 torch row beside it would compare
    different arithmetic). float16 takes a loss scaler, as jaxdl's dynamic loss scale.
    """
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"--dtype must be float32, bfloat16 or float16; got {dtype!r}")
    return dtype != "float32", ("float32" if dtype == "float32" else dtype), dtype == "float16"


def torch_step(name: str, batch: int, size: int, dtype: str, channels_last: bool, compile_: bool,
               smoke: bool) -> Callable[[int], None]:
    import torch
    import torchvision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    depth = cifar_depth(name)
    if depth is not None:
        model = torch_cifar_resnet(depth, 10, stages=1 if smoke else None)
    else:
        model = getattr(torchvision.models, name)(num_classes=10)
        if size <= 64 and "resnet" in name:  # the CIFAR stem, as jaxdl's stem="cifar"
            model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            model.maxpool = torch.nn.Identity()
        if smoke:
            for layer in ("layer1", "layer2", "layer3", "layer4"):
                setattr(model, layer, getattr(model, layer)[:1])
    model = model.to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device).to(memory_format=memory_format)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    amp, amp_dtype, scaled = torch_precision(dtype)
    amp_dtype = getattr(torch, amp_dtype)
    scaler = torch.amp.GradScaler(device) if scaled else None

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=amp_dtype, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    if compile_:
        step = torch.compile(step)
    model.train()

    def run_steps(n):
        for _ in range(n):
            loss = step()
        if device == "cuda":
            torch.cuda.synchronize()
        else:
            float(loss.detach())

    return run_steps


# Command-line key -> the label printed and written to the JSON.
VARIANTS = {
    "jaxdl": "jaxdl",
    "jaxdl-no-winograd": "jaxdl (no Winograd)",
    "jaxdl-stock": "jaxdl (stock flax Conv)",
    "torch": "torch eager",
    "torch-channels-last": "torch eager channels_last",
    "torch-compile": "torch.compile channels_last",
}
WARMUP_STEPS = 2  # the first compiles (jaxdl, torch.compile); the second is the first plain execution


JAXDL_CONVS = {"jaxdl": "jaxdl", "jaxdl-no-winograd": "no-winograd", "jaxdl-stock": "stock"}  # jaxdl_step's conv


def make_variant(key: str, name: str, b: int, size: int, dtype: str, smoke: bool) -> Callable[[int], None]:
    if key in JAXDL_CONVS:
        return jaxdl_step(name, b, size, dtype, JAXDL_CONVS[key], smoke)
    return torch_step(name, b, size, dtype, key != "torch", key == "torch-compile", smoke)


def warm_and_time(run: Callable[[int], None], steps: int) -> tuple[float, float]:
    """(seconds of the first step, mean seconds per step of ``steps`` steps after the warm-up)."""
    start = time.perf_counter()
    run(1)
    first = time.perf_counter() - start
    run(WARMUP_STEPS - 1)
    if steps <= 0:
        return first, float("nan")
    start = time.perf_counter()
    run(steps)
    return first, (time.perf_counter() - start) / steps


ALLOCATORS = ("tcmalloc", "system")  # host allocators a worker can run under (jaxdl.runtime)


def worker_env(allocator: str | None, env=None) -> dict[str, str]:
    """The environment of a worker that runs under ``allocator``: "tcmalloc" preloads it, "system"
    removes any preloaded allocator (glibc malloc), None passes this process's environment on."""
    from jaxdl import runtime

    env = dict(os.environ if env is None else env)
    if allocator is None:
        return env
    kept = [lib for lib in env.get("LD_PRELOAD", "").split() if runtime.allocator_in_use(lib) == "system"]
    env.pop("LD_PRELOAD", None)
    if kept:
        env["LD_PRELOAD"] = " ".join(kept)
    env[runtime.ENV_GUARD] = "1"
    if allocator == "tcmalloc":
        library = env.get(runtime.ENV_LIBRARY) or runtime.find_tcmalloc()
        if library is None:
            raise ValueError("--allocators tcmalloc: no tcmalloc library found "
                             "(apt-get install libtcmalloc-minimal4, or set JAXDL_ALLOCATOR_LIBRARY)")
        env = runtime.preload_env(env, library)
    return env


def run_worker(key: str, name: str, cfg: dict, allocator: str | None = None) -> tuple[float, float, str, str]:
    """One variant in a fresh interpreter (this script with ``--worker``) under ``allocator`` (see
    :func:`worker_env`); returns what it measured (first-step seconds, seconds per step), its device
    platform and the allocator it ran with."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", key, "--models", name,
           "--input-size", str(cfg["input_size"]), "--batch-size", str(cfg["batch_size"]),
           "--dtype", cfg["dtype"], "--steps", str(cfg["steps"])] + (["--smoke"] if cfg.get("smoke") else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(allocator))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"the {key} worker failed (exit {proc.returncode}): {tail}")
    out = json.loads(lines[-1])
    return out["first_step_seconds"], out["seconds_per_step"], out["device"], out["allocator"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="jaxdl vs PyTorch training throughput")
    parser.add_argument("--models", default=None, help="comma-separated (jaxdl names = torchvision names)")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--variants", default=None,
                        help="comma-separated subset of: " + ", ".join(VARIANTS) + " (default: all)")
    parser.add_argument("--isolation", choices=("process", "in-process"), default="process",
                        help="process (default): each repeat of each variant in a fresh process; "
                             "in-process: all in this one")
    parser.add_argument("--allocators", default=None,
                        help="comma-separated host allocators the workers run under: tcmalloc, system "
                             "(glibc malloc); two give every variant a row per allocator. Default: "
                             "tcmalloc when installed, else system (jaxdl.runtime)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: time one variant, print JSON
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one step (used by the tests)")
    parser.add_argument("--out", default=None, help="JSON report (a file, or a folder for --smoke)")
    args = parser.parse_args(argv)
    cfg = smoke_config() if args.smoke else get_config()
    for key in ("input_size", "batch_size", "dtype", "steps", "repeats"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.models:
        cfg["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
        if not cfg["models"]:
            parser.error("--models: no model named; give one or more, e.g. --models resnet18,resnet20")
        problems = [p for p in map(check_model, cfg["models"]) if p]
        if problems:
            parser.error("--models: " + "; ".join(problems))
    if args.no_compile:
        cfg["compile"] = False
    smoke = bool(cfg.get("smoke"))
    b, size, dtype = cfg["batch_size"], cfg["input_size"], cfg["dtype"]
    if args.variants is not None:
        keys = [k.strip() for k in args.variants.split(",") if k.strip()]
        unknown = [k for k in keys if k not in VARIANTS]
        if unknown or not keys:
            parser.error(f"--variants: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(VARIANTS)}")
    else:
        keys = [k for k in VARIANTS if k != "torch-compile" or cfg["compile"]]
    if args.worker is not None:
        if args.worker not in VARIANTS:
            parser.error(f"--worker: unknown variant {args.worker}")
        first, per_step = warm_and_time(make_variant(args.worker, cfg["models"][0], b, size, dtype, smoke),
                                        cfg["steps"])
        if args.worker.startswith("jaxdl"):
            import jax

            device = jax.devices()[0].platform
        else:
            import torch

            device = "gpu" if torch.cuda.is_available() else "cpu"
        from jaxdl.runtime import allocator_in_use

        print(json.dumps({"first_step_seconds": first, "seconds_per_step": per_step, "device": device,
                          "allocator": allocator_in_use()}))
        return 0

    from jaxdl import runtime

    if args.allocators is None:
        allocators = [None] if args.isolation == "in-process" else \
            ["tcmalloc" if (os.environ.get(runtime.ENV_LIBRARY) or runtime.find_tcmalloc()) else "system"]
    else:
        allocators = [a.strip() for a in args.allocators.split(",") if a.strip()]
        bad = [a for a in allocators if a not in ALLOCATORS]
        if bad or not allocators or len(set(allocators)) != len(allocators):
            parser.error(f"--allocators: {', '.join(bad) or 'empty or repeated'}; choose from {', '.join(ALLOCATORS)}")
        if args.isolation == "in-process":
            parser.error("--allocators needs --isolation process: an allocator is chosen when a process starts "
                         "(start this one with LD_PRELOAD to time in-process under another)")
        try:
            for a in allocators:
                worker_env(a)
        except ValueError as err:
            parser.error(str(err))

    # With --isolation process this process only starts the workers: it must not start JAX's
    # backend (on a GPU that would claim most of its memory before any worker runs).
    import jax

    try:
        import torch
    except ImportError:
        torch = None
        print("torch is not installed: only the jaxdl variants run "
              "(pip install torch==2.14.1 torchvision==0.29.1)")
    if torch is not None:
        torch.manual_seed(0)
    else:
        keys = [k for k in keys if k.startswith("jaxdl")]
        if not keys:
            parser.error("--variants: only torch variants were chosen and torch is not installed")
    from jaxdl.train.benchmark import cpu_description, source_revision, speed_switches

    cfg["isolation"] = args.isolation
    cfg["warmup_steps"] = WARMUP_STEPS
    cfg["allocators"] = [runtime.allocator_in_use()] if allocators == [None] else allocators
    report = {"config": cfg, "variants": keys, "jax": jax.__version__, "torch": getattr(torch, "__version__", None),
              "device": jax.devices()[0].platform if args.isolation == "in-process" else None,
              "cpu_count": os.cpu_count(), "cpu": cpu_description(),
              "torch_threads": torch.get_num_threads() if torch is not None else None,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "env": speed_switches(), "jaxdl_revision": source_revision(),
              "results": []}
    for name in cfg["models"]:
        first: dict[str, float] = {}

        def row_label(k: str, a: str | None) -> str:
            return VARIANTS[k] + (f" [{a}]" if len(allocators) > 1 else "")

        times: dict[str, list[float]] = {row_label(k, a): [] for k in keys for a in allocators}
        used: dict[str, str] = {}
        if args.isolation == "in-process":
            runs = {k: make_variant(k, name, b, size, dtype, smoke) for k in keys}
            for k, run in runs.items():  # compile / warm up
                first[VARIANTS[k]], _ = warm_and_time(run, 0)
                used[VARIANTS[k]] = runtime.allocator_in_use()
        for _ in range(cfg["repeats"]):
            for k in keys:
                for a in allocators:
                    if args.isolation == "process":
                        try:
                            f, per_step, report["device"], used[row_label(k, a)] = run_worker(k, name, cfg, a)
                        except RuntimeError as err:  # one line, not a traceback; nothing has been written yet
                            print(f"error: {err}", file=sys.stderr)
                            return 1
                        first.setdefault(row_label(k, a), f)
                    else:
                        start = time.perf_counter()
                        runs[k](cfg["steps"])
                        per_step = (time.perf_counter() - start) / cfg["steps"]
                    times[row_label(k, a)].append(per_step)
        # The baseline: torch eager as PyTorch runs by default (glibc malloc) when that row exists.
        eager = [lab for lab in times if lab.startswith("torch eager") and "channels" not in lab]
        base = next((lab for lab in eager if used[lab] == "system"), eager[0] if eager else next(iter(times)))
        base_ips = b / statistics.median(times[base])
        print(f"\n{name} {size}x{size} batch {b} {dtype} on {report['device']} ({os.cpu_count()} cores); "
              f"{cfg['repeats']} interleaved repeats x {cfg['steps']} steps, "
              f"{'one process per repeat and variant' if args.isolation == 'process' else 'all in one process'}; "
              f"allocator {', '.join(sorted(set(used.values())))}")
        print(f"{'variant':<40} {'img/s (median)':>14} {'min..max':>15} {'first step s':>12} {'vs ' + base:>22}")
        for label, ts in times.items():
            ips = [b / t for t in ts]
            med = b / statistics.median(ts)
            print(f"{label:<40} {med:>14.1f} {min(ips):>7.1f}..{max(ips):<7.1f} {first[label]:>12.1f} "
                  f"{med / base_ips:>21.2f}x")
            report["results"].append({"model": name, "variant": label, "images_per_second": med,
                                      "images_per_second_all": ips, "first_step_seconds": first[label],
                                      "allocator": used[label], "baseline": base, "ratio_vs_baseline": med / base_ips,
                                      "ratio_vs_" + base.replace(" ", "_"): med / base_ips})
    if args.out:
        out = Path(args.out)
        if out.suffix != ".json":
            out = out / "torch_side_by_side.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        from jaxdl.train.io import write_json_atomic

        write_json_atomic(out, report)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
