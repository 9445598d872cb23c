"""The detectors by name (the classifier registry in ``jaxdl.models`` is for ``x -> logits``
models; detectors have another call signature and live in this table).

``create_detector("yolo_v1", num_classes=3, image_size=64)`` -> a flax module with
``__call__(x) -> detections`` and ``loss(x, targets) -> (loss, parts)`` (see
:mod:`jaxdl.detection.train`).
"""

from __future__ import annotations

import difflib
import functools

from jaxdl.detection.faster_rcnn import FasterRCNN
from jaxdl.detection.ssd import SSD
from jaxdl.detection.yolo import YOLOv1
from jaxdl.errors import ConfigError

__all__ = ["DETECTORS", "create_detector", "available_detectors"]

DETECTORS = {
    "yolo_v1": YOLOv1,
    "ssd": SSD,
    "faster_rcnn": FasterRCNN,
    "mask_rcnn": functools.partial(FasterRCNN, mask_head=True),
    # Fast R-CNN (Girshick 2015): given proposals, RoI max pooling 7x7 (sec. 2.1)
    "fast_rcnn": functools.partial(FasterRCNN, proposal_source="given", pooler="pool"),
    # Faster R-CNN + FPN (Lin et al. 2017): P2..P5 on the small backbone's s4..s32, shared RPN head
    # (sec. 4.1), RoIs pooled from their eq. 1 level (sec. 4.2); sizes in jaxdl/detection/faster_rcnn.py
    "faster_rcnn_fpn": functools.partial(FasterRCNN, fpn=True),
}


def available_detectors() -> list[str]:
    return sorted(DETECTORS)


def create_detector(name: str, **kwargs):
    """Build the detector ``name`` with field overrides ``kwargs``.

    Raises:
      ConfigError: unknown name (valid ones and close matches listed) or unknown field.
    """
    if name not in DETECTORS:
        close = difflib.get_close_matches(str(name), list(DETECTORS), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ConfigError(f"unknown detector {name!r}{hint}; valid detectors: {', '.join(available_detectors())}")
    try:
        return DETECTORS[name](**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad option for detector {name!r}: {e}") from None
