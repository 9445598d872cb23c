"""Faster R-CNN (Ren et al. 2015): RPN + RoI Align box head on a stride-8 small CNN, on the generated shapes set (64x64, 2000 training / 300 test images).

Command:  python experiments/faster_rcnn_shapes.py      (or: jaxdl detect-train --model faster_rcnn)
Result:   see docs/detection.md (numbers measured on CPU, 2 shared cores, <= 10 minutes of training).
"""

from jaxdl.detection.experiment import DetectionConfig, recipe, run_detection_experiment


def get_config() -> DetectionConfig:
    """Faster R-CNN (Ren et al. 2015): RPN + RoI Align box head on a stride-8 small CNN.

    Adam 1e-3 with cosine decay to 0, horizontal flips, training capped at 600 s (RECIPES in
    jaxdl/detection/experiment.py holds the epochs and batch size).
    """
    return recipe("faster_rcnn")


def main(argv=None):
    return run_detection_experiment(get_config, "faster_rcnn-shapes", argv)


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
