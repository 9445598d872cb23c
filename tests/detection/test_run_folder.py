"""detect-train run folders: config / metrics / checkpoints written as it goes, exact resume, no clobbering."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxdl.detection.experiment import recipe, run_detection, smoke_config
from jaxdl.errors import ConfigError, ResumeError

def tiny(**changes):
    """YOLO v1 on 8 images of 32x32, batch 4: 2 steps per epoch, 2 epochs."""
    base = dataclasses.replace(smoke_config(recipe("yolo_v1")), epochs=2, max_steps=None, train_images=8)
    return dataclasses.replace(base, **changes)


def last_checkpoint(run_dir):
    manager = ocp.CheckpointManager(run_dir / "checkpoints" / "last")
    try:
        step = manager.latest_step()
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                                  meta=ocp.args.JsonRestore()))
    finally:
        manager.close()
    return step, restored["state"], dict(restored["meta"])


def assert_same_run(a, b):
    sa, ta, _ = last_checkpoint(a)
    sb, tb, _ = last_checkpoint(b)
    assert sa == sb == 4
    flat_a = {str(k): np.asarray(v) for k, v in __import__("jax").tree_util.tree_leaves_with_path(ta["params"])}
    flat_b = {str(k): np.asarray(v) for k, v in __import__("jax").tree_util.tree_leaves_with_path(tb["params"])}
    assert flat_a.keys() == flat_b.keys()
    for k in flat_a:
        np.testing.assert_allclose(flat_a[k], flat_b[k], rtol=0, atol=1e-6, err_msg=k)
    rows_a = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows_a] == [r["epoch"] for r in rows_b] == [1, 2]
    for ra, rb in zip(rows_a, rows_b):
        assert ra["step"] == rb["step"]
        for k in ra:
            if k not in ("seconds", "epoch", "step"):
                assert ra[k] == pytest.approx(rb[k], abs=1e-5), k
    summary_a = json.loads((a / "summary.json").read_text())
    summary_b = json.loads((b / "summary.json").read_text())
    for k in ("map50", "coco_ap", "coco_ar100", "steps", "epochs_run"):
        assert summary_a[k] == pytest.approx(summary_b[k], abs=1e-9), k


class Interrupt(Exception):
    pass


def test_interrupted_and_resumed_runs_equal_an_uninterrupted_one(tmp_path):
    whole = tmp_path / "whole"
    summary = run_detection(tiny(), str(whole), log=lambda _: None)
    assert summary["steps"] == 4 and summary["epochs_run"] == 2 and not summary["stopped_early"]
    for name in ("config.json", "metrics.jsonl", "summary.json", "examples.png"):
        assert (whole / name).is_file(), name
    assert json.loads((whole / "config.json").read_text())["epochs"] == 2

    # 1) killed after epoch 1 (its checkpoint is written before the epoch line is logged)
    cut = tmp_path / "cut"

    def stop_after_epoch_1(line):
        if line.startswith("epoch 1/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        run_detection(tiny(), str(cut), log=stop_after_epoch_1)
    assert last_checkpoint(cut)[0] == 2 and not (cut / "summary.json").exists()
    lines = []
    run_detection(tiny(), str(cut), log=lines.append, resume=True)
    assert any(x.startswith("resumed after step 2") for x in lines)
    assert_same_run(whole, cut)

    # 2) stopped by the time limit in the middle of epoch 1, resumed with more time
    early = tmp_path / "early"
    s = run_detection(tiny(time_limit_s=0.0), str(early), log=lambda _: None)
    assert s["stopped_early"] and s["steps"] == 1 and last_checkpoint(early)[0] == 1
    s = run_detection(tiny(time_limit_s=None), str(early), log=lambda _: None, resume=True)
    assert s["steps"] == 4 and not s["stopped_early"]
    assert json.loads((early / "config.json").read_text())["time_limit_s"] is None
    assert_same_run(whole, early)


def test_existing_runs_are_not_clobbered_and_resume_checks_the_command(tmp_path):
    run = tmp_path / "run"
    run_detection(dataclasses.replace(tiny(), epochs=1), str(run), log=lambda _: None)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(ConfigError, match="already holds files; use --resume"):
        run_detection(tiny(), str(run), log=lambda _: None)
    with pytest.raises(ConfigError, match=r"learning_rate \(0.001 in the run, 0.01 now\)"):
        run_detection(tiny(learning_rate=0.01), str(run), log=lambda _: None, resume=True)
    with pytest.raises(ConfigError, match="unknown detector"):   # bad input fails before anything is replaced
        run_detection(tiny(model="nope"), str(run), log=lambda _: None, overwrite=True)
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    with pytest.raises(ResumeError, match="holds no config.json"):
        run_detection(tiny(), str(tmp_path), log=lambda _: None, resume=True)
    with pytest.raises(ConfigError, match="needs --out"):
        run_detection(tiny(), None, resume=True)
    s = run_detection(tiny(), str(run), log=lambda _: None, resume=True)     # train the 1-epoch run for 2
    assert s["steps"] == 4 and s["epochs_run"] == 2
    s = run_detection(tiny(), str(run), log=lambda _: None, overwrite=True)
    assert s["steps"] == 4 and last_checkpoint(run)[0] == 4


def test_cli_refuses_an_existing_run_in_one_line(tmp_path):
    run = tmp_path / "run"
    (run / "keep").mkdir(parents=True)
    (run / "keep" / "results.txt").write_text("precious")
    r = subprocess.run([sys.executable, "-m", "jaxdl.cli", "detect-train", "--smoke", "--out", str(run)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "already holds files" in r.stderr and "Traceback" not in r.stderr
    assert (run / "keep" / "results.txt").read_text() == "precious"
