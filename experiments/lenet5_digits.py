"""LeNet-5 on scikit-learn's real 8x8 handwritten digits (the `make demo` run).

Command:  python experiments/lenet5_digits.py     (or: make demo)
Result:   see docs/results.md (>= 98% test accuracy in well under 3 minutes on 2 CPU cores).
"""

from jaxdl.train import TrainConfig
from jaxdl.train.experiment import run_experiment


def get_config() -> TrainConfig:
    """LeNet-5 (LeCun et al. 1998) on digits upsampled to 32x32; Adam, cosine decay, 30 epochs.

    Random crops (pad 4 at 32x32, i.e. shifts of up to one original pixel) and label smoothing 0.1
    regularise the 60k-parameter net on 1,438 training images.
    """
    return TrainConfig(model="lenet5", dataset="digits", epochs=30, batch_size=64, optimizer="adam",
                       learning_rate=2e-3, schedule="cosine", augment=("crop",), label_smoothing=0.1, seed=0)


def main(argv=None):
    return run_experiment(get_config, "lenet5-digits", argv)


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
