"""Object detection: box ops, anchors, NMS, metrics, annotation formats and the classic detectors.

* :mod:`~jaxdl.detection.boxes` - IoU, R-CNN box encoding/decoding, clipping.
* :mod:`~jaxdl.detection.anchors` - Faster R-CNN anchors, SSD default boxes.
* :mod:`~jaxdl.detection.nms` - static-size, batched, class-aware NMS.
* RoI pooling / RoI Align live in :mod:`jaxdl.nn.roi` (layers shared with segmentation).
* :mod:`~jaxdl.detection.metrics` - VOC AP (11-point / all-point), COCO AP / AR, mask AP.
* :mod:`~jaxdl.detection.formats` - Pascal VOC XML, COCO JSON, YOLO txt; :mod:`~jaxdl.detection.augment`.
* Detectors: :mod:`~jaxdl.detection.yolo`, :mod:`~jaxdl.detection.ssd`, :mod:`~jaxdl.detection.faster_rcnn`
  (Fast / Faster / Mask R-CNN, optional FPN neck from :mod:`~jaxdl.detection.fpn`),
  :mod:`~jaxdl.detection.rcnn`; by name with
  :func:`~jaxdl.detection.detectors.create_detector`; trained by :mod:`~jaxdl.detection.train`.
"""

from jaxdl.detection.anchors import anchor_grid, ssd_default_boxes, ssd_scales  # noqa: F401
from jaxdl.detection.boxes import (box_area, box_iou, box_iou_elementwise, clip_boxes, cxcywh_to_xyxy,  # noqa: F401
                                   decode_boxes, encode_boxes, xyxy_to_cxcywh)
from jaxdl.detection.nms import batched_nms, nms, nms_mask  # noqa: F401
