"""The one model registry of jaxdl.

Each variant is registered once as a builder (usually a ``functools.partial`` of a
family's module class) together with the facts a user needs: default input shape
(NHWC, without the batch axis), default number of classes, the paper and table it
reproduces, and the published parameter count it is checked against.

    >>> from jaxdl import models
    >>> model = models.create("lenet5", num_classes=10)
    >>> models.info("lenet5").input_shape
    (32, 32, 1)
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Callable

import flax.linen as nn

__all__ = ["ModelInfo", "register", "create", "info", "available", "families"]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model variant.

    Attributes:
      name: registered name, e.g. ``"resnet50"``.
      builder: callable returning a ``flax.linen.Module``; keyword overrides are passed
        through (``num_classes`` always is).
      input_shape: default input ``(H, W, C)``; models take NHWC batches.
      num_classes: default number of classes (1000 for ImageNet variants).
      family: family name, e.g. ``"resnet"``.
      paper: citation and the table/figure the variant reproduces.
      num_params: parameter count expected at the default ``num_classes`` and options,
        or ``None`` when there is no published number to match.
      params_reference: where ``num_params`` comes from ("torchvision", "paper Table 1" ...).
      params_exact: True if the count must match exactly; False means within 1%.
      description: one line for listings.
      smoke_input_shape: small ``(H, W, C)`` the test-suite runs forward + gradient at
        (the smallest size the architecture accepts); ``None`` = ``input_shape``.
      smoke_overrides: options the smoke test passes to keep it cheap on CPU (e.g. a tiny
        ``width_multiplier``); the parameter-count check uses the defaults plus ``count_overrides``.
      count_overrides: options under which ``num_params`` was published (e.g. GoogLeNet's
        torchvision count is without the auxiliary heads: ``{"aux_logits": False}``).
      fixed_input: False for models that accept any input size (perceptron, MLP); the runner
        then feeds the data set's own size instead of resizing to ``input_shape``.
    """

    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]
    num_classes: int
    family: str
    paper: str
    num_params: int | None = None
    params_reference: str = ""
    params_exact: bool = True
    description: str = ""
    smoke_input_shape: tuple[int, int, int] | None = None
    smoke_overrides: tuple[tuple[str, Any], ...] = ()
    count_overrides: tuple[tuple[str, Any], ...] = ()
    fixed_input: bool = True


_REGISTRY: dict[str, ModelInfo] = {}


def register(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    input_shape: tuple[int, int, int],
    family: str,
    paper: str,
    num_classes: int = 1000,
    num_params: int | None = None,
    params_reference: str = "",
    params_exact: bool = True,
    description: str = "",
    smoke_input_shape: tuple[int, int, int] | None = None,
    smoke_overrides: dict[str, Any] | None = None,
    count_overrides: dict[str, Any] | None = None,
    fixed_input: bool = True,
) -> ModelInfo:
    """Register ``builder`` under ``name``; re-registering a name is an error."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered (by family {_REGISTRY[name].family!r})")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape for {name!r} must be (H, W, C), got {input_shape!r}")
    entry = ModelInfo(
        name=name,
        builder=builder,
        input_shape=tuple(int(d) for d in input_shape),
        num_classes=int(num_classes),
        family=family,
        paper=paper,
        num_params=num_params,
        params_reference=params_reference,
        params_exact=params_exact,
        description=description,
        smoke_input_shape=None if smoke_input_shape is None else tuple(int(d) for d in smoke_input_shape),
        smoke_overrides=tuple(sorted((smoke_overrides or {}).items())),
        count_overrides=tuple(sorted((count_overrides or {}).items())),
        fixed_input=bool(fixed_input),
    )
    _REGISTRY[name] = entry
    return entry


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ValueError(
        f"unknown model {name!r}{hint} (run `jaxdl models` or jaxdl.models.available() for all "
        f"{len(_REGISTRY)} names)"
    )


def info(name: str) -> ModelInfo:
    """Return the :class:`ModelInfo` of a registered model (ValueError if unknown)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown(name) from None


# Model fields that rematerialise activations (jax.checkpoint) in the backward pass, by family:
# ``remat`` per residual / inverted-residual block, DenseNet's ``memory_efficient`` per dense layer
# (Pleiss et al. 2017, which keeps only each layer's bottleneck output).
REMAT_FIELDS = ("remat", "memory_efficient")


def remat_field(name: str) -> str | None:
    """The field of model ``name`` that turns on rematerialisation, or None when it has none."""
    fields = _accepted_fields(info(name).builder) or set()
    return next((f for f in REMAT_FIELDS if f in fields), None)


def remat_options(name: str) -> dict[str, bool]:
    """The override that turns on rematerialisation for model ``name`` (``{field: True}``).

    Raises:
      ConfigError: the model has no such field (``--remat`` cannot apply to it).
    """
    field = remat_field(name)
    if field is None:
        from jaxdl.errors import ConfigError
        raise ConfigError(f"--remat: {name} has no blocks to rematerialise (residual families, MobileNet v2 "
                          f"and DenseNet have); drop --remat")
    return {field: True}


def available(family: str | None = None) -> list[str]:
    """Sorted registered names, optionally only those of one family."""
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def families() -> list[str]:
    return sorted({e.family for e in _REGISTRY.values()})


def _accepted_fields(builder: Callable[..., Any]) -> set[str] | None:
    target = builder
    while hasattr(target, "func"):  # functools.partial
        target = target.func
    if isinstance(target, type) and dataclasses.is_dataclass(target):
        return {f.name for f in dataclasses.fields(target) if f.init and f.name not in ("parent", "name")}
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


def create(name: str, *, num_classes: int | None = None, **overrides: Any) -> nn.Module:
    """Build the registered model ``name``.

    Args:
      name: a name from :func:`available`.
      num_classes: size of the ``head`` layer; defaults to the registered value.
        ``0`` drops the head and returns pooled features (``pre_logits``).
      **overrides: module fields to change (``dtype``, ``dropout_rate``, ...).

    Raises:
      ValueError: unknown name (close names listed) or an option the model lacks.
    """
    entry = info(name)
    accepted = _accepted_fields(entry.builder)
    if accepted is not None:
        bad = sorted(set(overrides) - accepted)
        if bad:
            raise ValueError(
                f"model {name!r} has no option {', '.join(map(repr, bad))}; "
                f"valid options: {', '.join(sorted(accepted - {'num_classes'}))}"
            )
    n = entry.num_classes if num_classes is None else int(num_classes)
    if n < 0:
        raise ValueError(f"num_classes must be >= 0 (0 = no head), got {n}")
    return entry.builder(num_classes=n, **overrides)
