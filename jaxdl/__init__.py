"""jaxdl: the classic deep-learning canon in JAX (flax.linen + optax).

Sub-packages: ``models`` (registry + families), ``nn`` (layers flax lacks),
``optim`` (optax optimizer / schedule factories), ``data`` (readers, loader,
augmentation), ``train`` (TrainState, pure steps, loop, checkpoints), ``viz``.
"""

__version__ = "0.1.0"
