"""Import torchvision (or timm, same key names) weights into jaxdl models, and export them back.

    >>> variables = import_torchvision("resnet18", "resnet18.safetensors")
    >>> logits = jaxdl.models.create("resnet18").apply(variables, x)      # x: <f32>[N, H, W, 3]

Sources: a ``.safetensors`` file (read with ``safetensors.numpy``, no torch needed), a ``.pth`` /
``.pt`` file (``torch.load(weights_only=True)``; torch is imported only then), or a mapping of
key -> array (numpy arrays or torch tensors). The key map of each family is data
(:mod:`jaxdl.transfer.keymaps`); the layout conversions are the same for every family:

=====================================  ==============================================================
torch                                  jaxdl
=====================================  ==============================================================
Conv2d ``weight [O, I/g, kh, kw]``     ``kernel [kh, kw, I/g, O]`` (grouped and depthwise alike)
Linear ``weight [out, in]``            ``kernel [in, out]``; after a flatten of a ``C, H, W`` map the
                                       rows are reordered to jaxdl's ``H, W, C`` flatten
``bias``                               ``bias``
BatchNorm ``weight, bias``             ``scale, bias`` (params)
``running_mean, running_var``          ``mean, var`` (batch_stats); ``num_batches_tracked`` ignored
=====================================  ==============================================================

Every parameter of the model must be filled and every source key used: missing keys,
unexpected keys and shape mismatches raise one :class:`~jaxdl.errors.WeightImportError` that
names them. Nothing is ever loaded partially. The only keys dropped on purpose are
``num_batches_tracked`` and auxiliary heads (GoogLeNet ``aux1/aux2``, Inception v3
``AuxLogits``) when the model was built with ``aux_logits=False``.

Input normalization: torchvision's pretrained GoogLeNet and Inception v3 set ``transform_input=True``,
which maps an ImageNet-normalized input to ``(x - 0.5) / 0.5`` (the scaling their weights were
trained with) inside ``forward``. jaxdl models have no such switch: feed those weights images in
``[-1, 1]`` directly, or pass ImageNet-normalized images through :func:`torchvision_transform_input`,
which is that same map. With ``weights=None`` torchvision builds both models with
``transform_input=False``, the setting the parity tests compare.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import models
from jaxdl.errors import WeightImportError
from jaxdl.transfer.keymaps import SUPPORTED, KeyMap, keymap_for

__all__ = ["import_torchvision", "export_torchvision", "read_state_dict", "torchvision_transform_input",
           "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
_IGNORED_LEAVES = ("num_batches_tracked",)
_SHOW = 6  # keys named in an error message before "... and N more"


def torchvision_transform_input(x: jax.Array) -> jax.Array:
    """torchvision's ``transform_input`` of GoogLeNet / Inception v3, NHWC.

    ``x: <f32>[N, H, W, 3]`` normalized with the ImageNet mean/std -> the same image scaled as
    ``(x01 - 0.5) / 0.5``, the input torchvision's pretrained GoogLeNet/Inception v3 weights expect.
    """
    mean, std = jnp.asarray(IMAGENET_MEAN, x.dtype), jnp.asarray(IMAGENET_STD, x.dtype)
    return x * (std / 0.5) + (mean - 0.5) / 0.5


# ---------------------------------------------------------------------------------------------
# Reading sources.

def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def read_state_dict(source: Any) -> tuple[dict[str, np.ndarray], str]:
    """``source`` (a path or a mapping) -> (``{key: array}``, a description for messages)."""
    if isinstance(source, Mapping):
        state = {str(k): _to_numpy(v) for k, v in source.items()}
        return _unwrap(state), "the given state dict"
    if not isinstance(source, (str, os.PathLike)):
        raise WeightImportError(f"weights must be a .safetensors or .pth path or a mapping of arrays, "
                                f"got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise WeightImportError(f"weights file {path} does not exist (give a .safetensors or .pth file)")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
            state = load_file(str(path))
        except ImportError:
            raise WeightImportError("reading .safetensors needs the safetensors package: "
                                    "pip install safetensors") from None
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise WeightImportError(f"{path} is not a readable safetensors file ({type(err).__name__}: "
                                    f"{err})") from None
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        try:
            import torch
        except ImportError:
            raise WeightImportError(f"reading {path.name} needs PyTorch (pip install torch); or convert it "
                                    f"to .safetensors once on a machine that has torch") from None
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:
            raise WeightImportError(f"{path} is not a readable PyTorch state dict ({type(err).__name__}: "
                                    f"{str(err).splitlines()[0] if str(err) else ''})") from None
        if not isinstance(loaded, Mapping):
            raise WeightImportError(f"{path} holds a {type(loaded).__name__}, not a state dict; save "
                                    f"model.state_dict() instead of the model")
        state = _unwrap(dict(loaded))
        state = {k: _to_numpy(v) for k, v in state.items()}
    else:
        raise WeightImportError(f"unknown weights format {path.name!r}: expected a .safetensors or "
                                f".pth/.pt file")
    return _unwrap(state), str(path)


def _unwrap(state: dict[str, Any]) -> dict[str, Any]:
    # Training checkpoints often nest the state dict ({"state_dict": ...}, {"model": ...}) and
    # DataParallel prefixes every key with "module.".
    for key in ("state_dict", "model", "model_state_dict"):
        if key in state and isinstance(state[key], Mapping):
            state = dict(state[key])
            break
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


# ---------------------------------------------------------------------------------------------
# Layout conversions (torch <-> jaxdl), shared by every family.

def _dense_from_torch(w: np.ndarray, flatten_hw: tuple[int, int] | None) -> np.ndarray:
    if flatten_hw is not None:
        out, fan_in = w.shape
        h, wd = flatten_hw
        if fan_in % (h * wd):
            return w.T  # the shape check reports it
        c = fan_in // (h * wd)
        w = w.reshape(out, c, h, wd).transpose(0, 2, 3, 1).reshape(out, fan_in)
    return w.T


def _dense_to_torch(k: np.ndarray, flatten_hw: tuple[int, int] | None) -> np.ndarray:
    w = k.T
    if flatten_hw is not None:
        out, fan_in = w.shape
        h, wd = flatten_hw
        c = fan_in // (h * wd)
        w = w.reshape(out, h, wd, c).transpose(0, 3, 1, 2).reshape(out, fan_in)
    return w


def _model_and_target(name: str, model_options: Mapping[str, Any] | None):
    keymap = keymap_for(name)
    if keymap is None:
        try:
            models.info(name)
        except (KeyError, ValueError) as err:
            raise WeightImportError(f"unknown model {name!r}: {err}") from None
        raise WeightImportError(f"{name} has no torchvision counterpart to import from; models with a "
                                f"torchvision key map: {', '.join(SUPPORTED)}")
    model = models.create(name, **dict(model_options or {}))
    shape = models.info(name).input_shape
    abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape), jnp.float32)))
    target = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract))
    target = {k: v for k, v in target.items() if k[0] in ("params", "batch_stats")}
    return model, keymap, target


def _listing(kind: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW]) + (f" ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else "")
    return f"{len(keys)} {kind} ({shown})"


def import_torchvision(name: str, source: Any, *, model_options: Mapping[str, Any] | None = None
                       ) -> dict[str, Any]:
    """torchvision/timm state dict -> ``{"params": ..., "batch_stats": ...}`` for ``models.create(name)``.

    Args:
      name: a registered jaxdl model with a torchvision counterpart (:data:`keymaps.SUPPORTED`).
      source: ``.safetensors`` path, ``.pth``/``.pt`` path, or mapping ``key -> array``.
      model_options: overrides passed to ``models.create`` (e.g. ``{"aux_logits": False}``); the
        weights must fit the model they build (``num_classes`` included: reset the head after
        importing with :func:`jaxdl.transfer.reset_head` to change it).

    Raises:
      WeightImportError: unknown model, unreadable source, or keys that do not match (named).
    """
    model, keymap, target = _model_and_target(name, model_options)
    state, described = read_state_dict(source)
    flattened = dict(keymap.flattened)
    filled: dict[tuple[str, ...], np.ndarray] = {}
    unexpected, mismatched, dropped = [], [], []
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if leaf in _IGNORED_LEAVES:
            continue
        jax_module = keymap.to_jax(model, module) if module else None
        if jax_module is None or leaf not in ("weight", "bias", "running_mean", "running_var"):
            (dropped if module and keymap.is_optional(module) else unexpected).append(key)
            continue
        path = tuple(jax_module.split("/"))
        if keymap.is_optional(module) and not any(k[1:1 + len(path)] == path for k in target):
            dropped.append(key)  # an aux head the model was built without
            continue
        is_bn = ("params", *path, "scale") in target
        if is_bn:
            collection, jax_leaf = _BN_LEAVES[leaf]
        elif leaf in ("weight", "bias"):
            collection, jax_leaf = "params", ("kernel" if leaf == "weight" else "bias")
        else:
            unexpected.append(key)
            continue
        tkey = (collection, *path, jax_leaf)
        if tkey not in target:
            (dropped if keymap.is_optional(module) else unexpected).append(key)
            continue
        value = np.asarray(value)
        if jax_leaf == "kernel" and value.ndim == 4:
            value = value.transpose(2, 3, 1, 0)
        elif jax_leaf == "kernel" and value.ndim == 2:
            value = _dense_from_torch(value, flattened.get(jax_module))
        expected = tuple(target[tkey].shape)
        if tuple(value.shape) != expected:
            mismatched.append(f"{key} {tuple(state[key].shape)} -> {'/'.join(tkey)} expects {expected} "
                              f"(jaxdl layout)")
            continue
        filled[tkey] = value.astype(target[tkey].dtype)
    missing = ["/".join(k) for k in target if k not in filled]
    problems = []
    if missing:
        problems.append(_listing("missing jaxdl key(s)", missing))
    if unexpected:
        problems.append(_listing("unexpected source key(s)", unexpected))
    if mismatched:
        problems.append(_listing("shape mismatch(es)", mismatched))
    if problems:
        hint = ("; check that the weights are for this architecture and model_options (num_classes, "
                "aux_logits) match them")
        raise WeightImportError(f"cannot import {described} into {name}: " + "; ".join(problems) + hint)
    tree = flax.traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in filled.items()})
    tree.setdefault("batch_stats", {})
    return tree


def export_torchvision(name: str, variables: Mapping[str, Any], path: str | os.PathLike, *,
                       model_options: Mapping[str, Any] | None = None) -> dict[str, tuple[int, ...]]:
    """Write ``variables`` of ``models.create(name)`` as a ``.safetensors`` file with torchvision keys.

    The file loads with ``torchvision.models.<name>().load_state_dict(safetensors.torch.load_file(path))``.
    Written atomically (a temporary file renamed into place). Returns ``{torch key: shape}``.
    """
    from safetensors.numpy import save_file

    model, keymap, target = _model_and_target(name, model_options)
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(dict(variables)))
    flat = {k: np.asarray(v) for k, v in flat.items() if k[0] in ("params", "batch_stats")}
    missing = ["/".join(k) for k in target if k not in flat]
    extra = ["/".join(k) for k in flat if k not in target]
    wrong = ["/".join(k) + f" {flat[k].shape} (model: {tuple(target[k].shape)})" for k in target
             if k in flat and tuple(flat[k].shape) != tuple(target[k].shape)]
    problems = [_listing(kind, keys) for kind, keys in (("missing key(s)", missing), ("extra key(s)", extra),
                                                        ("shape mismatch(es)", wrong)) if keys]
    if problems:
        raise WeightImportError(f"variables do not belong to {name}: " + "; ".join(problems))
    flattened = dict(keymap.flattened)
    modules = sorted({k[1:-1] for k in flat if k[0] == "params"})
    tensors: dict[str, np.ndarray] = {}
    for path_ in modules:
        jax_module = "/".join(path_)
        torch_module = keymap.to_torch(model, jax_module)
        if torch_module is None:
            raise WeightImportError(f"{name}: jaxdl module {jax_module} has no torchvision name in the key map")
        if ("params", *path_, "scale") in flat:
            tensors[f"{torch_module}.weight"] = flat[("params", *path_, "scale")]
            tensors[f"{torch_module}.bias"] = flat[("params", *path_, "bias")]
            tensors[f"{torch_module}.running_mean"] = flat[("batch_stats", *path_, "mean")]
            tensors[f"{torch_module}.running_var"] = flat[("batch_stats", *path_, "var")]
            tensors[f"{torch_module}.num_batches_tracked"] = np.zeros((), np.int64)
            continue
        kernel = flat[("params", *path_, "kernel")]
        if kernel.ndim == 4:
            tensors[f"{torch_module}.weight"] = kernel.transpose(3, 2, 0, 1)
        else:
            tensors[f"{torch_module}.weight"] = _dense_to_torch(kernel, flattened.get(jax_module))
        if ("params", *path_, "bias") in flat:
            tensors[f"{torch_module}.bias"] = flat[("params", *path_, "bias")]
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", "jaxdl_model": name})
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return {k: tuple(v.shape) for k, v in tensors.items()}
