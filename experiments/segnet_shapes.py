"""SegNet / DeconvNet (narrow VGG16 encoders, max-unpooling decoders) on the generated shapes set.

Command:  python experiments/segnet_shapes.py [--model segnet|deconvnet] [--smoke]
Result:   see docs/segmentation.md (test mean IoU on 500 held-out 64x64 images, CPU, 2 shared cores).
"""

import os

os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")  # faster CPU compiles of the initialisers

from jaxdl.segmentation.training import SegmentationConfig, run_segmentation_experiment  # noqa: E402

# Width 1/8 of VGG16 (8..64 channels); DeconvNet's fc6/fc7 get 128 channels and a 2x2 fc6 kernel,
# the size of pool5 for 64x64 inputs (7x7 at the paper's 224x224).
OPTIONS = {"segnet": {"width": 0.125}, "deconvnet": {"width": 0.125, "fc_width": 128, "fc_kernel": 2}}


def get_config(model: str = "segnet") -> SegmentationConfig:
    """SegNet (Badrinarayanan et al. 2017) or DeconvNet (Noh et al. 2015) at 1/8 width on 64x64 shapes.

    1,000 training images (seed 0), 500 test images (seed 10,000); Adam 2e-3 with cosine decay,
    batch 16, 12 epochs. (SegNet trained with SGD 0.1 and median-frequency class balancing on CamVid;
    the shapes set is balanced enough to skip the balancing.)
    """
    return SegmentationConfig(model=model, model_options=OPTIONS[model], num_train=1000, num_test=500,
                              image_size=64, epochs=12, batch_size=16, optimizer="adam", learning_rate=2e-3,
                              schedule="cosine", seed=0)


def main(argv=None):
    return run_segmentation_experiment(get_config, "segnet-shapes", argv, model_choices=tuple(OPTIONS))


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
