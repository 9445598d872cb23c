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
from jaxdl.train.loop import TIMING_KEYS

ROOT = Path(__file__).resolve().parents[2]
TIMING = set(TIMING_KEYS)

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


# --- time to accuracy -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_five_epochs(tmp_path_factory):
    """5 epochs with an unreachable target (1.0): the rows every target run must reproduce."""
    import dataclasses

    out = tmp_path_factory.mktemp("target") / "reference"
    config = dataclasses.replace(SMALL, epochs=5, target_accuracy=1.0)
    summary = fit(config, out, progress=False, log=lambda s: None)
    rows = read_jsonl(out / "metrics.jsonl")
    accuracies = [r["test_accuracy"] for r in rows]
    # the first epoch after the first that beats every earlier one: a target only it reaches first
    later = [j for j in range(2, 6) if accuracies[j - 1] > max(accuracies[:j - 1])]
    assert later, f"test accuracy never improved after epoch 1: {accuracies}"
    return config, summary, rows, later[0]


def test_elapsed_clocks_and_unreached_target(reference_five_epochs):
    _, summary, rows, _ = reference_five_epochs
    assert max(r["test_accuracy"] for r in rows) < 1.0
    assert summary["epochs"] == 5 and summary["target_accuracy"] == 1.0
    assert summary["target_reached"] is False and summary["target_epoch"] is None
    assert summary["time_to_target_seconds"] is None and summary["time_to_target_train_seconds"] is None
    total = 0.0
    for row in rows:
        total += row["epoch_seconds"]
        assert row["elapsed_seconds"] == pytest.approx(total)
        assert 0 < row["elapsed_train_seconds"] <= row["elapsed_seconds"]
    assert summary["elapsed_seconds"] == rows[-1]["elapsed_seconds"]
    assert summary["train_seconds"] == pytest.approx(rows[-1]["elapsed_train_seconds"])


def test_stop_at_target_ends_after_the_first_epoch_reaching_it(reference_five_epochs, tmp_path):
    import dataclasses

    config, _, ref, j = reference_five_epochs
    target = ref[j - 1]["test_accuracy"]
    out = tmp_path / "stop"
    lines: list[str] = []
    summary = fit(dataclasses.replace(config, target_accuracy=target, stop_at_target=True), out,
                  progress=False, log=lines.append)
    rows = read_jsonl(out / "metrics.jsonl")
    assert strip_timing(rows) == strip_timing(ref[:j])
    assert summary["epochs"] == j and RunCheckpoints(out).latest_epoch() == j
    assert summary["target_reached"] is True and summary["target_epoch"] == j
    assert summary["target_step"] == rows[-1]["step"] == j * SMALL.steps_per_epoch
    assert summary["time_to_target_seconds"] == rows[-1]["elapsed_seconds"]
    assert summary["time_to_target_train_seconds"] == rows[-1]["elapsed_train_seconds"]
    assert json.loads((out / "summary.json").read_text())["target_epoch"] == j
    assert "reached" in lines[j - 1] and "(stopping)" in lines[j - 1]
    assert all("reached" not in line for line in lines[:j - 1])

    # resuming a run that stopped at its target trains nothing more, even with more epochs
    lines.clear()
    again = fit(dataclasses.replace(config, epochs=8), out, resume=True, progress=False, log=lines.append)
    assert len(read_jsonl(out / "metrics.jsonl")) == j and again["target_epoch"] == j
    assert any("not training further" in line for line in lines)

    # without stop_at_target the run goes on, and the summary still names the first epoch at the target
    go_on = fit(dataclasses.replace(config, target_accuracy=target), tmp_path / "go_on", progress=False,
                log=lambda s: None)
    assert go_on["epochs"] == 5 and go_on["target_epoch"] == j


def test_time_to_target_clock_continues_across_resume(reference_five_epochs, tmp_path):
    import dataclasses

    config, _, ref, j = reference_five_epochs
    target = ref[j - 1]["test_accuracy"]
    run = dataclasses.replace(config, target_accuracy=target, stop_at_target=True)
    out = tmp_path / "split"
    first = fit(dataclasses.replace(run, epochs=j - 1), out, progress=False, log=lambda s: None)
    assert first["target_reached"] is False
    before = read_jsonl(out / "metrics.jsonl")[-1]["elapsed_seconds"]
    summary = fit(run, out, resume=True, progress=False, log=lambda s: None)
    rows = read_jsonl(out / "metrics.jsonl")
    assert strip_timing(rows) == strip_timing(ref[:j]) and summary["target_epoch"] == j
    assert rows[-1]["elapsed_seconds"] == pytest.approx(before + rows[-1]["epoch_seconds"])
    assert summary["time_to_target_seconds"] == rows[-1]["elapsed_seconds"] > before


@pytest.mark.parametrize("fields, message", [
    ({"target_accuracy": 94}, "give 0.94"),
    ({"target_accuracy": 0.0}, "fraction in (0, 1]"),
    ({"stop_at_target": True}, "needs a target accuracy"),
    ({"target_accuracy": 0.9, "target_metric": "val_accuracy"}, "validation split"),
    ({"target_accuracy": 0.9, "target_metric": "train_loss"}, "test_accuracy or val_accuracy"),
])
def test_target_config_errors(fields, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**fields)
    assert message in str(info.value)
