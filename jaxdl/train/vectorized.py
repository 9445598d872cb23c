"""vmap where it pays: ensembles in one compiled step, 10-crop test-time augmentation, per-example gradients.

* Ensembles: K copies of a model, initialised from K seeds by one vmapped init, trained by one
  compiled step over all members (vmapped on GPU/TPU, unrolled on CPU: :func:`ensemble_strategy`;
  every member sees the same batch; its own dropout and augmentation keys come from its own
  seed), evaluated by averaging the members' softmax
  probabilities. Krizhevsky, Sutskever & Hinton 2012 (AlexNet), sec. 6: averaging the predictions
  of 5 (7 with pre-training) similar CNNs cut the top-1 error from 40.7% to 38.1% (36.7%).
* 10-crop testing (same paper, sec. 4.1): the four corner crops and the centre crop plus their
  horizontal reflections; the softmax outputs of the ten patches are averaged. Here the ten crops
  are one ``[10, N, h, w, C]`` array and one vmapped forward pass.
* Per-example gradients: ``vmap(grad(loss of one example))`` -- the gradient norm statistics
  used to choose a clipping threshold (Abadi et al. 2016, "Deep learning with differential
  privacy", sec. 3.1) or to watch training. The model runs in inference mode (BatchNorm with its
  running statistics, no dropout): batch statistics of a single example are meaningless.

Shapes: a stacked state has a leading member axis ``K`` on every leaf; images are NHWC.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.errors import ConfigError
from jaxdl.train.losses import LossFn
from jaxdl.train.state import TrainState
from jaxdl.train.steps import predict_step, train_step

__all__ = ["create_ensemble_state", "ensemble_train_step", "ensemble_probabilities", "ensemble_strategy", "map_members", "member",
           "ten_crop", "tta_probabilities", "per_example_grads", "grad_norm_stats"]


def create_ensemble_state(model: nn.Module, tx: optax.GradientTransformation, *, input_shape: Sequence[int],
                          seeds: Sequence[int]) -> TrainState:
    """K = len(seeds) states stacked on a leading axis; member k equals
    ``create_train_state(model, tx, input_shape=..., seed=seeds[k])`` (one vmapped init)."""
    if len(seeds) < 1:
        raise ConfigError("an ensemble needs at least one seed")
    x = jnp.zeros((1, *input_shape), jnp.float32)

    def init(seed):
        base = jax.random.PRNGKey(seed)
        init_key, train_key = jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)
        variables = model.init({"params": init_key, "dropout": init_key}, x, train=False)
        params = variables["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}),
                          opt_state=tx.init(params), rng=train_key, apply_fn=model.apply, tx=tx)

    return jax.jit(jax.vmap(init))(jnp.asarray(seeds, jnp.uint32))


ENSEMBLE_STRATEGIES = ("vmap", "unroll")


def ensemble_strategy(strategy: str | None = None) -> str:
    """How the members share one compiled program: ``"vmap"`` (one batched program) or ``"unroll"``
    (K copies of the member's program side by side in one executable). None: ``"unroll"`` on the CPU
    backend, ``"vmap"`` elsewhere. Why: vmap turns a conv over K kernels into one grouped conv
    (``feature_group_count = K``), which XLA:CPU runs slowly -- 5 LeNet-5s took 1.6x the time of 5
    separate steps vmapped and 1.0x unrolled (docs/performance.md); GPU/TPU run grouped convs well.
    Both give the same numbers (tested)."""
    if strategy is None:
        return "unroll" if jax.default_backend() == "cpu" else "vmap"
    if strategy not in ENSEMBLE_STRATEGIES:
        raise ConfigError(f"ensemble strategy must be one of {', '.join(ENSEMBLE_STRATEGIES)}; got {strategy!r}")
    return strategy


def map_members(fn: Callable, states: TrainState, *args, strategy: str | None) -> Any:
    """``fn(member_k, *args)`` for every member of a stacked ensemble, outputs stacked on a leading
    K axis, by ``strategy`` (:func:`ensemble_strategy`)."""
    if ensemble_strategy(strategy) == "vmap":
        return jax.vmap(fn, in_axes=(0,) + (None,) * len(args))(states, *args)
    count = jax.tree_util.tree_leaves(states)[0].shape[0]
    outputs = [fn(member(states, k), *args) for k in range(count)]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outputs)


def ensemble_train_step(states: TrainState, batch: dict[str, jax.Array], *, loss_fn: LossFn,
                        prepare: Callable | None = None, strategy: str | None = None
                        ) -> tuple[TrainState, dict[str, jax.Array]]:
    """:func:`train_step` for every member on the same batch; metrics get a leading K axis.
    Compile with ``jax.jit(functools.partial(ensemble_train_step, loss_fn=...), donate_argnums=0)``;
    ``strategy``: see :func:`ensemble_strategy` (None: the backend's faster one)."""
    step = functools.partial(train_step, loss_fn=loss_fn, prepare=prepare)
    return map_members(step, states, batch, strategy=strategy)


def member(states: TrainState, k: int) -> TrainState:
    """Member ``k`` of a stacked ensemble as an ordinary state."""
    return jax.tree_util.tree_map(lambda x: x[k], states)


def ensemble_probabilities(states: TrainState, images: jax.Array, *, prepare: Callable | None = None,
                           strategy: str | None = None) -> jax.Array:
    """Mean of the members' softmax probabilities. images: <f32|u8>[N, H, W, C] -> <f32>[N, num_classes]."""
    logits = map_members(functools.partial(predict_step, prepare=prepare), states, images, strategy=strategy)
    return jnp.mean(jax.nn.softmax(logits, axis=-1), axis=0)


def ten_crop(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """The 10 crops of AlexNet's test procedure: corners (top-left, top-right, bottom-left,
    bottom-right), centre, then the same five of the horizontally flipped images.

    images: <T>[N, H, W, C] -> <T>[10, N, h, w, C]. The centre crop starts at ``(H - h) // 2``.
    """
    h, w = int(size[0]), int(size[1])
    height, width = images.shape[1], images.shape[2]
    if not (0 < h <= height and 0 < w <= width):
        raise ConfigError(f"crop size {(h, w)} must fit in the images' {(height, width)}")
    origins = [(0, 0), (0, width - w), (height - h, 0), (height - h, width - w),
               ((height - h) // 2, (width - w) // 2)]
    crops = [images[:, r:r + h, c:c + w] for r, c in origins]
    crops += [crop[:, :, ::-1] for crop in crops]  # the flip of a corner crop is the mirrored corner's crop, flipped
    return jnp.stack(crops)


def tta_probabilities(state: TrainState, images: jax.Array, size: tuple[int, int], *,
                      prepare: Callable | None = None) -> jax.Array:
    """Softmax probabilities averaged over :func:`ten_crop`, as one vmapped evaluation.
    images: [N, H, W, C] -> <f32>[N, num_classes]."""
    crops = ten_crop(images, size)
    logits = jax.vmap(functools.partial(predict_step, prepare=prepare), in_axes=(None, 0))(state, crops)
    return jnp.mean(jax.nn.softmax(logits, axis=-1), axis=0)


def per_example_grads(state: TrainState, batch: dict[str, jax.Array], *, loss_fn: LossFn,
                      prepare: Callable | None = None) -> Any:
    """Gradient of each example's loss w.r.t. the params: a params-shaped tree with a leading N axis.

    Inference-mode forward (running BatchNorm statistics, no dropout); see the module docstring.
    """
    images = batch["image"] if prepare is None else prepare(jax.random.PRNGKey(0), batch["image"], False)

    def loss_one(params, image, label):
        variables = {**state.variables, "params": params}
        logits = state.apply_fn(variables, image[None], train=False)
        return loss_fn(logits, label[None])[0]

    return jax.vmap(jax.grad(loss_one), in_axes=(None, 0, 0))(state.params, images, batch["label"])


def grad_norm_stats(grads: Any) -> dict[str, jax.Array]:
    """Per-example global L2 norms of a per-example gradient tree and their mean/std/min/max/median."""
    squares = [jnp.sum(jnp.reshape(g, (g.shape[0], -1)) ** 2, axis=1) for g in jax.tree_util.tree_leaves(grads)]
    norms = jnp.sqrt(sum(squares))
    return {"norms": norms, "mean": jnp.mean(norms), "std": jnp.std(norms), "min": jnp.min(norms),
            "max": jnp.max(norms), "median": jnp.median(norms)}
