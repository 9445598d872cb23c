"""Feature extraction ("CNN features off the shelf"): any feature tap of a model for a whole data set.

    >>> feats = extract_features(model, variables, dataset.images, taps=("pre_logits",), prepare=prep)
    >>> feats["pre_logits"].shape          # <f32>[N, D]

Donahue et al. 2014 ("DeCAF", ICML) and Razavian et al. 2014 ("CNN features off-the-shelf", CVPR
workshops) take the activations of a trained network's last layers as a generic image descriptor
and fit a linear classifier (an SVM) on them. :func:`extract_features` runs one jit-compiled
function over fixed-size batches (the last one padded, so one shape is compiled) with a progress
bar; :func:`extract_run_features` does it for a trained jaxdl run folder and writes ``.npz``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError

__all__ = ["extract_features", "extract_run_features", "save_features", "load_run_model"]


def extract_features(model: Any, variables: Any, images: np.ndarray, *, taps: Sequence[str] = ("pre_logits",),
                     batch_size: int = 256, prepare: Callable[[jax.Array, jax.Array, bool], jax.Array] | None = None,
                     progress: bool = True, flatten: bool = False) -> dict[str, np.ndarray]:
    """``images: [N, H, W, C]`` -> ``{tap: <f32>[N, ...]}`` in inference mode (running BN stats, no dropout).

    ``prepare(key, images, train)`` turns raw images into model input (the run's normalization);
    ``flatten`` reshapes each feature to ``[N, -1]`` (conv maps for a linear classifier).
    """
    from tqdm.auto import tqdm

    if isinstance(taps, str):
        taps = (taps,)
    taps = tuple(taps)
    if not taps:
        raise ConfigError("give at least one feature tap (e.g. pre_logits)")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    n = len(images)
    if n == 0:
        raise ConfigError("no images to extract features from")
    size = min(batch_size, n)

    @jax.jit
    def forward(variables, x):
        if prepare is not None:
            x = prepare(jax.random.PRNGKey(0), x, False)
        out = model.apply(variables, x, train=False, features="all" if taps == ("all",) else taps)
        return {k: v.astype(jnp.float32) for k, v in out.items()}

    chunks: dict[str, list[np.ndarray]] = {}
    with tqdm(total=n, desc="features", unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, n, size):
            batch = np.asarray(images[start:start + size])
            real = len(batch)
            if real < size:  # pad to the compiled shape
                batch = np.concatenate([batch, np.zeros((size - real, *batch.shape[1:]), batch.dtype)])
            out = jax.device_get(forward(variables, batch))
            for t in out:
                value = np.asarray(out[t][:real])
                chunks.setdefault(t, []).append(value.reshape(real, -1) if flatten else value)
            bar.update(real)
    return {t: np.concatenate(v) for t, v in chunks.items()}


def save_features(path: str | os.PathLike, features: dict[str, np.ndarray], **extra: Any) -> Path:
    """Write ``features`` (and e.g. ``labels=``) to ``.npz``, atomically (temporary file + rename)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError(f"feature file must end in .npz, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **features, **{k: np.asarray(v) for k, v in extra.items()})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_run_model(run_dir: str | os.PathLike, *, which: str = "last"):
    """Rebuild a trained run: ``(experiment, variables)`` from its config.json and checkpoint.

    ``experiment`` is :class:`jaxdl.train.Experiment` (data, model, the run's ``prepare``).
    """
    from jaxdl.train.checkpoint import load_run
    from jaxdl.train.loop import build_experiment

    config, variables, _ = load_run(run_dir, which=which)
    exp = build_experiment(config)
    variables = {k: v for k, v in variables.items() if v or k == "params"}
    return exp, variables


def extract_run_features(run_dir: str | os.PathLike, out: str | os.PathLike, *, taps: Sequence[str] = ("pre_logits",),
                         splits: Sequence[str] = ("train", "test"), batch_size: int = 256, limit: int | None = None,
                         progress: bool = True) -> Path:
    """Features of a trained run for its data set splits -> ``.npz`` with ``{split}_{tap}``, ``{split}_labels``.

    The data set, class selection and normalization are the run's own (rebuilt from config.json).
    """
    exp, variables = load_run_model(run_dir)
    sets = {"train": exp.train_set, "test": exp.test_set}
    arrays: dict[str, np.ndarray] = {}
    for split in splits:
        if split not in sets:
            raise ConfigError(f"unknown split {split!r}; choose train or test")
        dataset = sets[split]
        if limit is not None:
            dataset = dataset.subset(np.arange(min(limit, len(dataset))))
        feats = extract_features(exp.model, variables, dataset.images, taps=taps, batch_size=batch_size,
                                 prepare=exp.prepare, progress=progress)
        for tap, value in feats.items():
            arrays[f"{split}_{tap}"] = value
        arrays[f"{split}_labels"] = dataset.labels
    return save_features(out, arrays, classes=np.asarray(exp.test_set.classes))
