"""YOLO v1 (Redmon et al. 2016) with a conv head on a stride-8 small CNN, S=8, B=2, on the generated shapes set (64x64, 2000 training / 300 test images).

Command:  python experiments/yolo_v1_shapes.py      (or: jaxdl detect-train --model yolo_v1)
Result:   see docs/detection.md (numbers measured on CPU, 2 shared cores, <= 10 minutes of training).
"""

from jaxdl.detection.experiment import DetectionConfig, recipe, run_detection_experiment


def get_config() -> DetectionConfig:
    """YOLO v1 (Redmon et al. 2016) with a conv head on a stride-8 small CNN, S=8, B=2.

    Adam 1e-3 with cosine decay to 0, horizontal flips, training capped at 600 s (RECIPES in
    jaxdl/detection/experiment.py holds the epochs and batch size).
    """
    return recipe("yolo_v1")


def main(argv=None):
    return run_detection_experiment(get_config, "yolo_v1-shapes", argv)


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
