"""Training: TrainState, losses, metrics, pure steps, checkpoints and the one loop (``fit``)."""

from jaxdl.train.checkpoint import RunCheckpoints
from jaxdl.train.config import TrainConfig
from jaxdl.train.losses import (available_losses, binary_cross_entropy, get_loss, mean_squared_error,
                                multiclass_hinge, softmax_cross_entropy)
from jaxdl.train.loop import Experiment, build_experiment, fit, prepare_images
from jaxdl.train.metrics import classification_sums, finalize, topk_correct
from jaxdl.train.state import TrainState, create_train_state
from jaxdl.train.steps import eval_step, predict_step, train_step

__all__ = [
    "TrainState", "create_train_state", "train_step", "eval_step", "predict_step", "TrainConfig", "fit",
    "build_experiment", "Experiment", "prepare_images", "RunCheckpoints", "get_loss", "available_losses",
    "softmax_cross_entropy", "binary_cross_entropy", "mean_squared_error", "multiclass_hinge",
    "classification_sums", "finalize", "topk_correct",
]
