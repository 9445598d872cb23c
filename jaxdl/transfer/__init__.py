"""Transfer learning: torchvision weight import/export, fine-tuning, feature extraction.

* :func:`import_torchvision` / :func:`export_torchvision` - torchvision/timm state dicts <-> flax
  variables (key maps per family in :mod:`jaxdl.transfer.keymaps`).
* :mod:`jaxdl.transfer.finetune` - freeze masks, head reset, per-group learning rates; used by the
  trainer through ``TrainConfig(init=..., freeze=..., backbone_lr_multiplier=...)``.
* :func:`extract_features`, :func:`extract_run_features` - any feature tap for a whole data set.
"""

from jaxdl.transfer.features import extract_features, extract_run_features, load_run_model, save_features
from jaxdl.transfer.finetune import (HEAD_PATTERN, finetune_optimizer, freeze_labels, load_pretrained,
                                     merge_pretrained)
from jaxdl.transfer.keymaps import SUPPORTED, KeyMap, Rule
from jaxdl.transfer.weights import (IMAGENET_MEAN, IMAGENET_STD, export_torchvision, import_torchvision,
                                    read_state_dict, torchvision_transform_input)

__all__ = ["SUPPORTED", "KeyMap", "Rule", "import_torchvision", "export_torchvision", "read_state_dict",
           "torchvision_transform_input", "IMAGENET_MEAN", "IMAGENET_STD", "HEAD_PATTERN", "finetune_optimizer",
           "freeze_labels", "merge_pretrained", "load_pretrained", "extract_features", "extract_run_features",
           "save_features", "load_run_model"]
