"""The shared command line of ``experiments/*.py``.

* Classifier experiments (trained by :func:`jaxdl.train.fit`) are a ``get_config()`` plus
  ``main(argv) = run_experiment(get_config, name, argv)``: ``--out``, ``--smoke``, ``--resume``,
  ``--overwrite``, ``--data-dir``.
* Experiments with a run function of their own (language models, memory tasks, captioning,
  throughput) use ``main(argv) = run_script(get_config, run, name, argv, smoke=smoke,
  options=[Option("--epochs", int)])``: ``--out``, ``--smoke``, ``--no-progress`` and the
  script's own config overrides, bad input reported in one line with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

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


@dataclasses.dataclass(frozen=True)
class Option:
    """A command-line override of one config field for :func:`run_script`.

    ``Option("--epochs", int)`` sets ``config.epochs``; ``field`` names another field;
    ``also`` are further fields set whenever this option is given (e.g. clearing options that
    belonged to the value it replaces).
    """

    flag: str
    type: Callable[[str], Any] = str
    help: str | None = None
    field: str | None = None
    also: tuple[tuple[str, Any], ...] = ()

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def run_script(get_config: Callable[[], Any], run: Callable[[Any, Path], dict], name: str,
               argv: Sequence[str] | None = None, *, smoke: Callable[[Any], Any],
               options: Sequence[Option] = (), errors: tuple[type[BaseException], ...] = (JaxdlError,)) -> dict:
    """The command line of an experiment that has its own ``run(config, out_dir) -> summary``.

    ``config = get_config()`` (a frozen dataclass), shrunk by ``smoke(config)`` under ``--smoke``,
    then the given ``options`` applied; ``errors`` (bad input) print ``name: error: ...`` on
    stderr and exit with code 2.
    """
    parser = argparse.ArgumentParser(description=(get_config.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--out", default=f"runs/{name}")
    parser.add_argument("--smoke", action="store_true", help="shrink to a few seconds (used by the tests)")
    parser.add_argument("--no-progress", action="store_true", help="accepted for the common interface")
    for option in options:
        parser.add_argument(option.flag, type=option.type, default=None, help=option.help)
    args = parser.parse_args(argv)
    config = get_config()
    if args.smoke:
        config = smoke(config)
    for option in options:
        value = getattr(args, option.dest)
        if value is not None:
            config = dataclasses.replace(config, **{option.field or option.dest: value}, **dict(option.also))
    try:
        return run(config, Path(args.out))
    except errors as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
