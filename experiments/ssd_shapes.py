"""SSD (Liu et al. 2016) on four maps (8x8 .. 1x1), 380 default boxes, on the generated shapes set (64x64, 2000 training / 300 test images).

Command:  python experiments/ssd_shapes.py      (or: jaxdl detect-train --model ssd)
Result:   see docs/detection.md (numbers measured on CPU, 2 shared cores, <= 10 minutes of training).
"""

from jaxdl.detection.experiment import DetectionConfig, recipe, run_detection_experiment


def get_config() -> DetectionConfig:
    """SSD (Liu et al. 2016) on four maps (8x8 .. 1x1), 380 default boxes.

    Adam 1e-3 with cosine decay to 0, horizontal flips, training capped at 600 s (RECIPES in
    jaxdl/detection/experiment.py holds the epochs and batch size).
    """
    return recipe("ssd")


def main(argv=None):
    return run_detection_experiment(get_config, "ssd-shapes", argv)


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
