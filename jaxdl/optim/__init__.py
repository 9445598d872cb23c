"""Optimizer and schedule factories of jaxdl, as optax chains (guide: docs/optim.md).

    >>> from jaxdl import optim
    >>> lr = optim.schedule("cosine", learning_rate=0.1, total_steps=10_000, warmup_steps=500)
    >>> tx = optim.optimizer("nesterov", lr, momentum=0.9, weight_decay=5e-4, clip_norm=1.0)
    >>> opt_state = tx.init(params)                                     # doctest: +SKIP
    >>> optim.current_learning_rate(opt_state)                          # doctest: +SKIP
    0.0

Reduce-on-plateau: ``tx = optimizer("sgd", schedule("plateau", learning_rate=0.1))`` and, once per
epoch, ``opt_state = plateau_update(opt_state, value=val_loss)``.
"""

from jaxdl.optim.optimizers import (
    ScheduledLearningRateState,
    available_optimizers,
    current_learning_rate,
    kernels_mask,
    optimizer,
    scale_by_scheduled_learning_rate,
)
from jaxdl.optim.plateau import Plateau, PlateauState, plateau_update, scale_by_plateau
from jaxdl.optim.schedules import available_schedules, schedule

__all__ = [
    "optimizer",
    "available_optimizers",
    "schedule",
    "available_schedules",
    "Plateau",
    "PlateauState",
    "plateau_update",
    "current_learning_rate",
    "kernels_mask",
    "scale_by_plateau",
    "scale_by_scheduled_learning_rate",
    "ScheduledLearningRateState",
]
