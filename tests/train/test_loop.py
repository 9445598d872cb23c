"""The training loop end to end on the bundled digits: outputs, resume equality, SIGKILL, NaN stop."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxdl.errors import ConfigError, NonFiniteLossError, ResumeError
from jaxdl.train import RunCheckpoints, TrainConfig, fit
from jaxdl.train.io import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"epoch_seconds", "images_per_second"}

SMALL = TrainConfig(model="lenet5", dataset="digits", epochs=2, batch_size=32, train_limit=256,
                    steps_per_epoch=4, optimizer="adam", learning_rate=1e-3, eval_batch_size=256)


def strip_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "lenet5"
    summary = fit(SMALL, out, progress=False, log=lambda s: None)
    return out, summary


def test_run_folder_has_every_output(small_run):
    out, summary = small_run
    for name in ("config.json", "metrics.jsonl", "summary.json", "curves.png", "confusion.png"):
        assert (out / name).is_file(), name
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "test_top5_accuracy",
                "learning_rate", "images_per_second"):
        assert key in rows[0]
    saved = json.loads((out / "summary.json").read_text())
    for key in ("model", "dataset", "num_params", "epochs", "test_accuracy", "best_test_accuracy",
                "train_seconds", "images_per_second", "jax_version", "device"):
        assert key in saved, key
    assert saved["num_params"] == 60850 and saved["model"] == "lenet5" and saved["epochs"] == 2
    assert saved["test_accuracy"] == rows[-1]["test_accuracy"]
    assert saved["best_test_accuracy"] == max(r["test_accuracy"] for r in rows)
    assert TrainConfig.from_dict(json.loads((out / "config.json").read_text())) == SMALL
    assert RunCheckpoints(out).latest_epoch() == 2


def test_refuses_to_overwrite_and_resume_checks(small_run, tmp_path):
    out, _ = small_run
    with pytest.raises(ConfigError, match="--resume"):
        fit(SMALL, out, progress=False, log=lambda s: None)
    with pytest.raises(ResumeError, match="does not exist"):
        fit(SMALL, tmp_path / "missing", resume=True, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResumeError, match="config.json"):
        fit(SMALL, tmp_path / "empty", resume=True, progress=False)


def test_resume_continues_exactly(tmp_path):
    """2 epochs + resume to 3 == 3 epochs straight (constant lr, so the schedule does not depend on length)."""
    import dataclasses

    three = dataclasses.replace(SMALL, epochs=3, augment=("crop", "flip"))
    fit(three, tmp_path / "straight", progress=False, log=lambda s: None)
    fit(dataclasses.replace(three, epochs=2), tmp_path / "split", progress=False, log=lambda s: None)
    fit(three, tmp_path / "split", resume=True, progress=False, log=lambda s: None)
    a = strip_timing(read_jsonl(tmp_path / "straight" / "metrics.jsonl"))
    b = strip_timing(read_jsonl(tmp_path / "split" / "metrics.jsonl"))
    assert len(a) == 3 and a == b


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    """Kill -9 the CLI while epoch 2 is running; --resume must reproduce the uninterrupted metrics."""
    args = ["--model", "mlp", "--model-options", "hidden_sizes=[1024,1024],dropout_rate=0.1", "--dataset", "digits",
            "--epochs", "3", "--batch-size", "64", "--optimizer", "momentum", "--learning-rate", "0.02",
            "--seed", "3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "jaxdl.cli", "train", *args, "--out", str(killed), "--progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            chunk = proc.stderr.read(1)
            if not chunk:
                break
            seen += chunk
            # tqdm draws "epoch 2/3:  NN%|..." while epoch 2 runs: kill as soon as a step of it is shown
            if "epoch 2/3:" in seen and seen.rsplit("epoch 2/3:", 1)[1].count("|") >= 1 and \
                    not seen.rsplit("epoch 2/3:", 1)[1].lstrip().startswith("0%"):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"process was not killed mid-run (rc={proc.returncode}):\n{seen[-2000:]}"
    assert len(read_jsonl(killed / "metrics.jsonl")) == 1  # epoch 1 finished, epoch 2 was interrupted
    from jaxdl.cli import main

    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    straight = tmp_path / "straight"
    assert main(["train", *args, "--out", str(straight), "--no-progress"]) == 0
    a = strip_timing(read_jsonl(straight / "metrics.jsonl"))
    b = strip_timing(read_jsonl(killed / "metrics.jsonl"))
    assert [r["epoch"] for r in b] == [1, 2, 3] and a == b


def test_nonfinite_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path):
    """The learning rate jumps to 1e18 after epoch 1 (ReLU MLP): training stops in epoch 2, naming the step."""
    import dataclasses

    config = dataclasses.replace(SMALL, model="mlp", epochs=3, optimizer="sgd", learning_rate=0.01,
                                 schedule="multistep", schedule_options={"milestones": [1], "factor": 1e20})
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError) as info:
        fit(config, out, progress=False, log=lambda s: None)
    assert info.value.step >= SMALL.steps_per_epoch  # failed in epoch 2 (steps 4..7)
    assert f"step {info.value.step}" in str(info.value)
    assert RunCheckpoints(out).latest_epoch() == 1
    assert len(read_jsonl(out / "metrics.jsonl")) == 1
    assert not (out / "summary.json").exists()
