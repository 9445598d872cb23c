"""Fine-tuning: start from pretrained weights, reset the head, freeze by name, scale the backbone's rate.

The trainer (:func:`jaxdl.train.fit`) uses these through four :class:`~jaxdl.train.TrainConfig`
fields: ``init`` (a jaxdl run folder or a ``.safetensors``/``.pth`` file), ``reset_head``,
``freeze`` (name patterns) and ``backbone_lr_multiplier``. Frozen BatchNorm is the model field
``frozen_bn`` (``model_options={"frozen_bn": True}``): running statistics are used and kept while
``train=True`` still switches dropout on.

Parameter paths are written ``module/sub/leaf`` (``stage1_block0/conv1/kernel``). A freeze pattern
is a regular expression matched at the start of a path (``re.match``): ``stem`` freezes
``stem_conv/kernel`` and ``stem_bn/*``, ``stage[12]_`` the first two stages; the word ``backbone``
freezes everything but the classifier head(s).

The recipes of Yosinski et al. 2014 ("How transferable are features in deep neural networks?",
NIPS) and the course practice they follow: re-initialize the last layer for the new classes,
train it at the base learning rate and the pretrained layers at about a tenth of it (or not at all).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import flax
import jax
import optax

from jaxdl.errors import ConfigError, WeightImportError

__all__ = ["HEAD_PATTERN", "param_paths", "freeze_labels", "finetune_optimizer", "merge_pretrained",
           "load_pretrained", "is_head"]

# The classifier layers whose width is the number of classes: reset for a new task.
HEAD_PATTERN = r"(head|aux\d_head/fc2|AuxLogits/fc)/"
FROZEN, TRAINABLE = "frozen", "trainable"


def _path_string(path: Sequence[Any]) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def param_paths(tree: Any) -> list[str]:
    """``module/sub/leaf`` path of every leaf of ``tree``."""
    return [_path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def is_head(path: str) -> bool:
    return re.match(HEAD_PATTERN, path + "/" if not path.endswith("/") else path) is not None


def _compile(patterns: Sequence[str]) -> list[re.Pattern]:
    compiled = []
    for pattern in patterns:
        if pattern == "backbone":
            compiled.append(re.compile(rf"(?!{HEAD_PATTERN})"))
            continue
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise ConfigError(f"freeze pattern {pattern!r} is not a regular expression ({err})") from None
    return compiled


def freeze_labels(params: Any, patterns: Sequence[str]) -> Any:
    """Pytree like ``params`` with ``"frozen"`` where a pattern matches the leaf's path, else ``"trainable"``.

    Raises ConfigError for a pattern that matches nothing (a typo would otherwise train everything).
    """
    compiled = _compile(patterns)
    used = [False] * len(compiled)

    def label(path, _):
        name = _path_string(path)
        hits = [i for i, p in enumerate(compiled) if p.match(name)]
        for i in hits:
            used[i] = True
        return FROZEN if hits else TRAINABLE

    labels = jax.tree_util.tree_map_with_path(label, params)
    unused = [p for p, u in zip(patterns, used) if not u]
    if unused:
        top = sorted({p.split("/")[0] for p in param_paths(params)})
        raise ConfigError(f"freeze pattern(s) {', '.join(map(repr, unused))} match no parameter; patterns match "
                          f"the start of paths like 'stage1_block0/conv1/kernel'; top-level modules: "
                          f"{', '.join(top)}")
    return labels


def finetune_optimizer(base: optax.GradientTransformation, params: Any, *, freeze: Sequence[str] = (),
                       backbone_lr_multiplier: float = 1.0) -> optax.GradientTransformation:
    """Wrap ``base`` so frozen leaves get no update and no state, and the backbone a scaled step.

    ``multi_transform`` gives frozen leaves ``set_to_zero`` (an empty state: no Adam moments for
    them) and the rest one instance of ``base`` (so a global-norm clip or a plateau schedule
    still sees all trainable leaves at once). The backbone (every trainable leaf outside the
    head) then has its update multiplied by ``backbone_lr_multiplier``: for the optimizers of
    :mod:`jaxdl.optim` the update is linear in the learning rate, so this is the same as a
    learning rate ``multiplier * lr`` for that group.
    """
    if not backbone_lr_multiplier > 0:
        raise ConfigError(f"backbone learning-rate multiplier must be > 0 (freeze the backbone instead of 0), "
                          f"got {backbone_lr_multiplier}")
    if not freeze and backbone_lr_multiplier == 1.0:
        return base
    trainable = base
    if backbone_lr_multiplier != 1.0:
        backbone_mask = lambda tree: jax.tree_util.tree_map_with_path(  # noqa: E731
            lambda path, _: not is_head(_path_string(path)), tree)
        trainable = optax.chain(base, optax.masked(optax.scale(backbone_lr_multiplier), backbone_mask))
    labels = freeze_labels(params, freeze)
    return optax.multi_transform({TRAINABLE: trainable, FROZEN: optax.set_to_zero()}, labels)


def merge_pretrained(fresh: Mapping[str, Any], pretrained: Mapping[str, Any], *, reset_head: bool = True
                     ) -> dict[str, Any]:
    """Variables of the new model: every leaf from ``pretrained`` except the head (kept fresh).

    Both are ``{"params": ..., "batch_stats": ...}``. Raises WeightImportError naming missing,
    unexpected or mis-shaped leaves (e.g. a different architecture), never a partial merge.
    """
    flat_new = flax.traverse_util.flatten_dict(flax.core.unfreeze(dict(fresh)), sep="/")
    flat_old = flax.traverse_util.flatten_dict(flax.core.unfreeze(dict(pretrained)), sep="/")
    flat_new = {k: v for k, v in flat_new.items() if k.split("/")[0] in ("params", "batch_stats")}
    flat_old = {k: v for k, v in flat_old.items() if k.split("/")[0] in ("params", "batch_stats")}

    def head(key: str) -> bool:
        return reset_head and is_head(key.split("/", 1)[1])

    merged, missing, wrong = {}, [], []
    for key, value in flat_new.items():
        if head(key):
            merged[key] = value
        elif key not in flat_old:
            missing.append(key)
        elif tuple(flat_old[key].shape) != tuple(value.shape):
            wrong.append(f"{key} {tuple(flat_old[key].shape)} (model: {tuple(value.shape)})")
        else:
            merged[key] = flat_old[key]
    unexpected = [k for k in flat_old if k not in flat_new and not head(k)]
    problems = [f"{len(keys)} {kind} ({', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''})"
                for kind, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong)) if keys]
    if problems:
        hint = "" if reset_head else " (a different number of classes needs reset_head=True)"
        raise WeightImportError("pretrained weights do not fit the model: " + "; ".join(problems) + hint)
    out = flax.traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in merged.items()})
    out.setdefault("batch_stats", {})
    return out


def load_pretrained(init: str, model_name: str, model_options: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """``init`` -> variables: a jaxdl run folder (its last checkpoint) or a torchvision weights file."""
    path = Path(init)
    if path.is_dir():
        from jaxdl.train.checkpoint import load_run

        config, variables, _ = load_run(path)
        if config.model != model_name:
            raise WeightImportError(f"--init run {path} trained {config.model}, this run trains {model_name}; "
                                    f"fine-tune the same architecture")
        return variables
    if path.is_file():
        from jaxdl.transfer.weights import import_torchvision

        options = {k: v for k, v in dict(model_options or {}).items() if k != "num_classes"}
        return import_torchvision(model_name, path, model_options=options)
    raise WeightImportError(f"--init {init} is neither a jaxdl run folder nor a weights file")
