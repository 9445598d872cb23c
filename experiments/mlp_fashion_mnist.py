"""An MLP 784-256-128-64-10 (ReLU, dropout) on Fashion-MNIST.

Command:  python experiments/mlp_fashion_mnist.py
Needs:    apt-get install dataset-fashion-mnist (or JAXDL_DATA / --data-dir with the IDX files)
Result:   see docs/results.md (target >= 88% test accuracy).
"""

from jaxdl.train import TrainConfig
from jaxdl.train.experiment import run_experiment


def get_config() -> TrainConfig:
    """MLP with hidden sizes 256-128-64, ReLU, dropout 0.2; Adam, cosine decay, 20 epochs."""
    return TrainConfig(model="mlp", dataset="fashion_mnist", epochs=20, batch_size=128, optimizer="adam",
                       learning_rate=1e-3, schedule="cosine", seed=0,
                       model_options={"hidden_sizes": (256, 128, 64), "activation": "relu", "dropout_rate": 0.2})


def main(argv=None):
    return run_experiment(get_config, "mlp-fashion-mnist", argv)


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
