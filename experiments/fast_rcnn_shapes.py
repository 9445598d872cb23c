"""Fast R-CNN (Girshick 2015): selective-search proposals, RoI max pooling 7x7, multi-task loss, on the generated shapes set (64x64, 1000 training / 300 test images).

Command:  python experiments/fast_rcnn_shapes.py      (or: jaxdl detect-train --model fast_rcnn)
Result:   see docs/detection.md (numbers measured on CPU, 2 shared cores, <= 10 minutes of training).
"""

from jaxdl.detection.experiment import DetectionConfig, recipe, run_detection_experiment


def get_config() -> DetectionConfig:
    """Fast R-CNN (Girshick 2015): selective-search proposals, RoI max pooling 7x7, multi-task loss.

    Adam 1e-3 with cosine decay to 0, horizontal flips, training capped at 600 s (RECIPES in
    jaxdl/detection/experiment.py holds the epochs and batch size).
    """
    return recipe("fast_rcnn")


def main(argv=None):
    return run_detection_experiment(get_config, "fast_rcnn-shapes", argv)


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
