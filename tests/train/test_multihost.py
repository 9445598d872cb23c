"""Two processes x 2 fake CPU devices on 127.0.0.1 (jax.distributed + gloo) train like one process:
the parallel step + sharded loader (multihost_check.py), and `jaxdl train` end to end (run folder
written by process 0 only, evaluation, plateau decisions, --resume)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TIMEOUT = 240  # seconds for the whole exchange; a hung coordinator fails the test instead of CI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, devices: int, *extra: str) -> subprocess.Popen:
    return start([str(HERE / "multihost_check.py"), "--out", str(out), *extra], devices)


def start(argv: list[str], devices: int) -> subprocess.Popen:
    """``python ARGV...`` with ``devices`` fake CPU devices and no inherited multi-host settings."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
           "JAX_THREEFRY_PARTITIONABLE": "0", "PYTHONPATH": str(ROOT)}
    for name in ("JAXDL_COORDINATOR", "JAXDL_NUM_PROCESSES", "JAXDL_PROCESS_ID"):
        env.pop(name, None)
    return subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT)


def finish(procs: list[subprocess.Popen], expect: int = 0) -> list[str]:
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, text in zip(procs, outputs):
        assert p.returncode == expect, text[-3000:]
    return outputs


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_two_processes_agree_with_one(tmp_path, mode):
    port = free_port()
    procs = [launch(tmp_path / f"p{i}.npz", 2, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                    "--process-id", str(i), "--mode", mode) for i in range(2)]
    procs.append(launch(tmp_path / "single.npz", 1, "--mode", "none"))
    finish(procs)
    ref = np.load(tmp_path / "single.npz")
    assert int(ref["step"]) == 12 and int(ref["processes"]) == 1
    for i in range(2):
        got = np.load(tmp_path / f"p{i}.npz")
        assert int(got["processes"]) == 2 and int(got["devices"]) == 4 and int(got["step"]) == 12
        assert set(got.files) == set(ref.files)
        np.testing.assert_allclose(got["losses"], ref["losses"], atol=1e-5)
        for name in ref.files:
            if name not in ("losses", "step", "devices", "processes"):
                np.testing.assert_allclose(got[name], ref[name], atol=1e-5, err_msg=name)


# 3 epochs of 4 steps; the plateau schedule (driven by the validation loss) with threshold 0.5 and
# patience 0 halves the rate after epoch 2, so epoch 3 trains at 5e-4 only if every process took
# the same decision from the same evaluation.
TRAIN = ["--model", "mlp", "--dataset", "digits", "--batch-size", "32", "--train-limit", "256",
         "--steps-per-epoch", "4", "--optimizer", "adam", "--learning-rate", "1e-3", "--val-fraction", "0.1",
         "--schedule", "plateau", "--schedule-options", "patience=0,threshold=0.5,factor=0.5", "--no-progress"]
TIMING = {"epoch_seconds", "images_per_second", "elapsed_train_seconds", "elapsed_seconds"}


def cli(*args: str) -> list[str]:
    return ["-m", "jaxdl.cli", "train", *args]


def two_processes(args_of) -> list[subprocess.Popen]:
    """`jaxdl train` as processes 0 and 1 of one run (2 x 2 devices); ``args_of(i)``: its flags."""
    port = free_port()
    return [start(cli(*args_of(i), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                      "--process-id", str(i)), 2) for i in range(2)]


def test_jaxdl_train_on_two_processes_resumes_and_equals_one_process(tmp_path):
    from jaxdl.train.checkpoint import load_run
    from jaxdl.train.io import read_jsonl

    runs = {0: tmp_path / "run", 1: tmp_path / "p1-run"}  # process 1 is given its own path: it must stay unused
    procs = two_processes(lambda i: [*TRAIN, "--epochs", "2", "--parallel", "jit", "--out", str(runs[i])])
    procs.append(start(cli(*TRAIN, "--epochs", "3", "--out", str(tmp_path / "ref")), 1))  # one process, one device
    texts = finish(procs)
    assert "epoch 2/2" in texts[0] and "epoch" not in texts[1]  # only process 0 logs
    # Resume from process 0's folder; process 1 reads nothing (its path does not exist).
    texts = finish(two_processes(lambda i: ["--resume", str(runs[i]), "--epochs", "3", "--no-progress"]))
    assert "resumed" in texts[0] and "epoch 3/3" in texts[0] and "epoch" not in texts[1]
    assert not runs[1].exists()
    for name in ("config.json", "metrics.jsonl", "summary.json", "curves.png", "confusion.png"):
        assert (runs[0] / name).is_file(), name

    got, ref = read_jsonl(runs[0] / "metrics.jsonl"), read_jsonl(tmp_path / "ref" / "metrics.jsonl")
    assert [r["epoch"] for r in got] == [1, 2, 3] and [r["step"] for r in got] == [4, 8, 12]
    assert [r["learning_rate"] for r in ref] == pytest.approx([1e-3, 1e-3, 5e-4])  # the plateau cut happened
    for g, r in zip(got, ref):
        assert set(g) == set(r)
        for key in set(r) - TIMING:
            assert g[key] == pytest.approx(r[key], rel=1e-5, abs=1e-6), (r["epoch"], key)
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["device"].endswith("x4") and summary["steps"] == 12

    _, variables, meta = load_run(runs[0])
    _, ref_variables, _ = load_run(tmp_path / "ref")
    assert meta["epoch"] == 3
    leaves, ref_leaves = (jax.tree_util.tree_leaves_with_path(v) for v in (variables, ref_variables))
    assert len(leaves) == len(ref_leaves) > 0
    for (path, a), (_, b) in zip(leaves, ref_leaves):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, err_msg=jax.tree_util.keystr(path))


def test_a_refusal_of_process_0_stops_every_process(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("not a run")
    texts = finish(two_processes(lambda i: [*TRAIN, "--epochs", "1", "--parallel", "jit",
                                            "--out", str(tmp_path / ("run" if i == 0 else "p1-run"))]), expect=2)
    for text in texts:
        assert "already holds files" in text
    assert not (tmp_path / "p1-run").exists() and sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]
