"""Model zoo: ``create(name, num_classes=..., **overrides)``, ``available()``, ``info(name)``.

Every classifier follows one interface (see docs/models.md):

* ``model(x, train=False)`` with ``x: <float>[N, H, W, C]`` returns logits
  ``<float>[N, num_classes]``; the last layer is named ``head``.
* ``model(x, train=False, features=("stem", "stage1", ...))`` returns a dict of named
  intermediate features and runs no layer past the last requested tap.
* ``num_classes=0`` drops the head; the output is then the pooled ``pre_logits``.
* Dropout needs an rng named ``"dropout"`` when ``train=True``; BatchNorm statistics live in
  the ``batch_stats`` collection.

Family modules in this package register their variants when :mod:`jaxdl.models` is
imported (each module calls :func:`register` at import time; nothing outside jaxdl is
touched).
"""

from __future__ import annotations

import importlib
import pkgutil

from jaxdl.models.registry import ModelInfo, available, create, families, info, register, remat_field, remat_options

__all__ = ["ModelInfo", "available", "create", "families", "info", "register", "remat_field", "remat_options", "feature_info"]

# Import every family module of this package once, so that their register() calls run.
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "registry" and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")
del _module

from jaxdl.models.introspect import feature_info, count_params, layer_table  # noqa: E402

# Families living outside this package (their models take zoo backbones by name, so they import
# this package): importing them here makes available()/create() complete whatever is imported first.
importlib.import_module("jaxdl.segmentation")
