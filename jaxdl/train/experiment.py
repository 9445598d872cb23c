"""The shared command line of ``experiments/*.py``: ``--out``, ``--smoke``, ``--resume``, ``--data-dir``.

Each experiment script is a ``get_config()`` plus ``main(argv) = run_experiment(get_config, name, argv)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Callable, Sequence

from jaxdl.errors import JaxdlError
from jaxdl.train import TrainConfig, fit


def run_experiment(get_config: Callable[[], TrainConfig], name: str, argv: Sequence[str] | None = None,
        smoke: Callable[[TrainConfig], TrainConfig] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(get_config.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--out", default=f"runs/{name}")
    parser.add_argument("--smoke", action="store_true", help="shrink to a few seconds (used by the tests)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    config = get_config()
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=args.data_dir)
    if args.smoke:
        config = (smoke or default_smoke)(config)
    try:
        return fit(config, args.out, resume=args.resume, overwrite=args.overwrite,
                   progress=False if args.no_progress else None)
    except JaxdlError as err:  # bad input: one line, exit code 2
        print(f"{name}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def default_smoke(config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(config, epochs=1, steps_per_epoch=3, train_limit=512, test_limit=256)
