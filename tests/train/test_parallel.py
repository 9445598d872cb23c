"""Data parallel (jit over a Mesh, pmap) equals one device; multi-host config; process shards.

The 8-device checks run tests/train/parallel_check.py in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (the flag must be set before jax starts).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxdl.data import Dataset, batches
from jaxdl.errors import ConfigError
from jaxdl.train.parallel import _pmap_pad, distributed_settings, make_data_parallel, pad_batch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def run_fake_devices(*args: str, timeout: int = 400) -> list[dict]:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
           "JAX_THREEFRY_PARTITIONABLE": "0", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(HERE / "parallel_check.py"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def fake_device_results(tmp_path_factory):
    """One subprocess (one jax start) for every 8-device check."""
    out = tmp_path_factory.mktemp("parallel")
    return out, run_fake_devices(str(out))


# The three tests that read the fixture share one xdist group, so that under `pytest -n 2 --dist loadgroup`
# the subprocess (about 90 s on the 2-core CI machine) runs once, not once on each worker.
_FAKE_DEVICES = pytest.mark.xdist_group("fake-8-devices")


@_FAKE_DEVICES
def test_one_step_on_8_devices_equals_one_device(fake_device_results):
    _, results = fake_device_results
    steps = [r for r in results if "fit" not in r and not r["augment"]]
    assert len(steps) == 2
    for r in steps:
        assert r["steps"] == [2, 2, 2]
        assert r["update_size"] > 1e-3, r  # the steps really changed the parameters
        for mode in ("jit", "pmap"):
            assert r[f"{mode}_params"] < 1e-5, (mode, r)
            assert r[f"{mode}_batch_stats"] < 1e-5, (mode, r)  # running BN stats = global-batch stats
            assert r[f"{mode}_metrics"] < 1e-4, (mode, r)
        assert r["jit_vs_pmap_params"] < 1e-5 and r["jit_vs_pmap_batch_stats"] < 1e-5, r
        # global batches of 20 and 12 over 8 devices: per-device batches differ (3 vs 2, 2 vs 1)
        assert r["batch_size"] % 8 != 0 and r["count"] == [float(r["batch_size"])] * 2


@_FAKE_DEVICES
def test_augmented_steps_agree_across_jit_and_pmap(fake_device_results):
    """Random crops and flips key on each example's place in the global batch, not on the device:
    jit over a Mesh and pmap train alike (and equal one device when the batch splits evenly)."""
    _, results = fake_device_results
    augmented = {r["batch_size"]: r for r in results if r.get("augment")}
    assert sorted(augmented) == [16, 20]
    for r in augmented.values():
        assert r["steps"] == [2, 2, 2] and r["update_size"] > 1e-3, r
        for part in ("params", "batch_stats"):
            assert r[f"jit_vs_pmap_{part}"] < 1e-5, (part, r)
        assert r["jit_vs_pmap_metrics"] < 1e-4, r
    even = augmented[16]
    for mode in ("jit", "pmap"):
        assert even[f"{mode}_params"] < 1e-5 and even[f"{mode}_batch_stats"] < 1e-5, (mode, even)
        assert even[f"{mode}_metrics"] < 1e-4, (mode, even)


@_FAKE_DEVICES
def test_fit_parallel_modes_agree_and_resume(fake_device_results):
    tmp_path, results = fake_device_results
    (rows,) = [r["fit"] for r in results if "fit" in r]
    for mode in ("jit", "pmap_resumed"):
        assert [r["step"] for r in rows[mode]] == [3, 6]
        for ref, got in zip(rows["none"], rows[mode]):
            for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
                assert got[key] == pytest.approx(ref[key], abs=1e-5), (mode, key)
    assert (tmp_path / "pmap" / "checkpoints").is_dir()


def test_pad_batch_masks_padding():
    batch = {"image": np.ones((5, 2, 2, 1), np.uint8), "label": np.arange(5, dtype=np.int32)}
    out = pad_batch(batch, 4)
    assert out["image"].shape[0] == 8 and out["mask"].tolist() == [1] * 5 + [0] * 3
    assert pad_batch(batch, 5) is batch
    spread = _pmap_pad(batch, 4)  # 5 over 4 devices: 2,1,1,1 real examples in slots of 2
    assert spread["mask"].reshape(4, 2).sum(1).tolist() == [2, 1, 1, 1]
    assert spread["label"].reshape(4, 2)[:, 0].tolist() == [0, 2, 3, 4]


def test_bad_parallel_settings_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="parallel mode"):
        make_data_parallel("shard")
    with pytest.raises(ConfigError, match="more devices"):
        make_data_parallel("jit", 10_000)
    with pytest.raises(ConfigError, match="needs --parallel"):
        make_data_parallel("none", 2)
    for name in ("JAXDL_COORDINATOR", "JAXDL_NUM_PROCESSES", "JAXDL_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert distributed_settings() is None
    with pytest.raises(ConfigError, match="--num-processes"):
        distributed_settings("127.0.0.1:1234")
    monkeypatch.setenv("JAXDL_COORDINATOR", "127.0.0.1:1234")
    monkeypatch.setenv("JAXDL_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAXDL_PROCESS_ID", "1")
    assert distributed_settings() == {"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": 1}
    with pytest.raises(ConfigError, match="process id"):
        distributed_settings(process_id=2)


def test_process_shards_partition_each_global_batch():
    ds = Dataset(np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1), np.arange(40, dtype=np.int32) % 2,
                 tuple("ab"), "t")  # the pixel value names the example
    whole = [b["image"].ravel() for b in batches(ds, 8, seed=3, epoch=2)]
    parts = [[b["image"].ravel() for b in batches(ds, 8, seed=3, epoch=2, shard=(i, 2))] for i in range(2)]
    for k, labels in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([parts[0][k], parts[1][k]]), labels)
    with pytest.raises(ConfigError, match="divisible"):
        next(batches(ds, 9, shard=(0, 2)))
