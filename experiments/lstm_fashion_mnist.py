"""Sequential Fashion-MNIST with a LSTM: each 28x28 image is read row by row, 28 steps of 28 pixels.

Command:  python experiments/lstm_fashion_mnist.py
Needs:    apt-get install dataset-fashion-mnist (or JAXDL_DATA / --data-dir with the IDX files)
Same as:  jaxdl train --model lstm_classifier --dataset fashion_mnist --epochs 8 --batch-size 128 \
            --lr 2e-3 --schedule cosine --clip-norm 1.0
Result:   see docs/rnn.md (target >= 88% test accuracy).
"""

from jaxdl.train import TrainConfig
from jaxdl.train.experiment import run_experiment


def get_config() -> TrainConfig:
    """LSTM classifier (hidden 128, one layer) on sequential Fashion-MNIST; Adam 2e-3, cosine, clip 1.0, 8 epochs.

    Gradient clipping at global norm 1.0 (Pascanu, Mikolov & Bengio 2013) guards against the rare
    exploding step of a recurrent net; it costs nothing when gradients are small.
    """
    return TrainConfig(model="lstm_classifier", dataset="fashion_mnist", epochs=8, batch_size=128, optimizer="adam",
                       learning_rate=2e-3, schedule="cosine", seed=0, optimizer_options={"clip_norm": 1.0},
                       model_options={"hidden_size": 128})


def main(argv=None):
    return run_experiment(get_config, "lstm-fashion-mnist", argv)


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
