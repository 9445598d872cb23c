"""CNN features + linear classifiers vs the end-to-end network (LeNet-5, Fashion-MNIST).

Command:  python experiments/features_svm_fashion_mnist.py [--out runs/features-svm-fashion-mnist]
Needs:    Fashion-MNIST (apt-get install dataset-fashion-mnist, or --data-dir with the IDX files)
Result:   docs/transfer.md (test accuracy of the network's own head vs LinearSVC and logistic
          regression on its c5 (120-d) and f6 (84-d) features, and on raw pixels for reference).

Steps: train LeNet-5 with the one trainer (``get_config``), extract the ``c5`` and ``f6`` taps of
every training and test image with :func:`jaxdl.transfer.extract_features` (batched, jit,
progress bar; written to ``OUT/features.npz``; ``jaxdl extract`` does the same from the CLI), standardize them (statistics of the training
features) and fit scikit-learn's ``LinearSVC`` and ``LogisticRegression`` on the training
features (Razavian et al. 2014: off-the-shelf CNN features + a linear SVM).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from jaxdl.errors import JaxdlError
from jaxdl.train import TrainConfig, fit
from jaxdl.train.io import write_json_atomic

TAPS = ("c5", "f6")


def get_config() -> TrainConfig:
    """LeNet-5, Fashion-MNIST, 20,000 training images (fixed random subset), 4 epochs, Adam, cosine.

    Bounded for a shared 2-core CPU; the full 20-epoch run is experiments/lenet5_fashion_mnist.py.
    """
    return TrainConfig(model="lenet5", dataset="fashion_mnist", epochs=4, batch_size=128, optimizer="adam",
                       learning_rate=2e-3, schedule="cosine", augment=("flip",), train_limit=20000, seed=0)


def linear_probes(features: dict[str, np.ndarray], taps, *, max_train: int | None = None) -> dict[str, dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    y_train, y_test = features["train_labels"], features["test_labels"]
    if max_train is not None:
        y_train = y_train[:max_train]
    results = {}
    for tap in taps:
        x_train = features[f"train_{tap}"].reshape(len(features[f"train_{tap}"]), -1)[:len(y_train)]
        x_test = features[f"test_{tap}"].reshape(len(y_test), -1)
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
        row = {"dim": int(x_train.shape[1])}
        for name, classifier in (("linear_svc", LinearSVC(C=1.0, dual=False, max_iter=2000)),
                                 ("logistic_regression", LogisticRegression(C=1.0, max_iter=1000))):
            start = time.perf_counter()
            classifier.fit(x_train, y_train)
            row[name] = float(np.mean(classifier.predict(x_test) == y_test))
            row[f"{name}_seconds"] = time.perf_counter() - start
        results[tap] = row
    return results


def main(argv=None):
    from jaxdl.transfer import extract_features, load_run_model, save_features

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/features-svm-fashion-mnist")
    parser.add_argument("--smoke", action="store_true", help="shrink to a few seconds (used by the tests)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--skip-train", action="store_true", help="reuse the trained run in OUT/network")
    args = parser.parse_args(argv)
    out = Path(args.out)
    config = get_config()
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=args.data_dir)
    limit = None
    if args.smoke:
        config = dataclasses.replace(config, epochs=1, steps_per_epoch=2, train_limit=512, test_limit=128)
        limit = 256
    run = out / "network"
    try:
        if args.skip_train:
            summary = json.loads((run / "summary.json").read_text())
        else:
            summary = fit(config, run, overwrite=args.overwrite or args.smoke,
                          progress=False if args.no_progress else None)
        # The run rebuilt once from its folder: model, data (with the run's subset) and normalization.
        exp, variables = load_run_model(run)
    except JaxdlError as err:
        print(f"features_svm_fashion_mnist: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    features = {}
    for split, dataset in (("train", exp.train_set), ("test", exp.test_set)):
        if limit is not None:
            dataset = dataset.subset(np.arange(min(limit, len(dataset))))
        taps = extract_features(exp.model, variables, dataset.images, taps=TAPS, prepare=exp.prepare,
                                progress=not args.no_progress)
        features.update({f"{split}_{tap}": value for tap, value in taps.items()})
        features[f"{split}_labels"] = dataset.labels
    save_features(out / "features.npz", features)
    # Raw pixels (scaled to [0, 1]) as the no-CNN baseline.
    n_train, n_test = len(features["train_labels"]), len(features["test_labels"])
    features["train_pixels"] = exp.train_set.images[:n_train].reshape(n_train, -1) / 255.0
    features["test_pixels"] = exp.test_set.images[:n_test].reshape(n_test, -1) / 255.0
    probes = linear_probes(features, TAPS + ("pixels",))
    result = {"network_test_accuracy": summary["test_accuracy"], "train_examples": n_train,
              "test_examples": n_test, "device": summary["device"], "probes": probes}
    write_json_atomic(out / "features_svm.json", result)
    print(f"end-to-end LeNet-5: {summary['test_accuracy']:.2%} on {n_test} test images")
    for tap, row in probes.items():
        print(f"{tap:7s} ({row['dim']:4d}-d)  LinearSVC {row['linear_svc']:.2%}  "
              f"LogisticRegression {row['logistic_regression']:.2%}")
    return {**summary, "probes": probes}


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
