"""Transfer learning: torchvision weight import/export, fine-tuning masks, feature extraction."""

from jaxdl.transfer.keymaps import SUPPORTED, KeyMap, Rule
from jaxdl.transfer.weights import (IMAGENET_MEAN, IMAGENET_STD, export_torchvision, import_torchvision,
                                    read_state_dict, torchvision_transform_input)

__all__ = ["SUPPORTED", "KeyMap", "Rule", "import_torchvision", "export_torchvision", "read_state_dict",
           "torchvision_transform_input", "IMAGENET_MEAN", "IMAGENET_STD"]
