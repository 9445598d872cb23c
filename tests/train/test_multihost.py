"""Two processes x 2 fake CPU devices on 127.0.0.1 (jax.distributed + gloo) train like one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

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
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
           "JAX_THREEFRY_PARTITIONABLE": "0", "PYTHONPATH": str(ROOT)}
    for name in ("JAXDL_COORDINATOR", "JAXDL_NUM_PROCESSES", "JAXDL_PROCESS_ID"):
        env.pop(name, None)
    return subprocess.Popen([sys.executable, str(HERE / "multihost_check.py"), "--out", str(out), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def finish(procs: list[subprocess.Popen]) -> None:
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-3000:]


@pytest.mark.parametrize("mode", ["jit"])
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
