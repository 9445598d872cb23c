"""jaxdl bench: bad input is a one-line error; the peak-FLOP source is stated; a tiny run reports every field."""

import json

import jax
import pytest

from jaxdl.cli import main
from jaxdl.errors import ConfigError
from jaxdl.train.benchmark import benchmark_one, device_peak_flops, run_bench_command


def test_bad_bench_input_is_a_config_error(capsys):
    with pytest.raises(ConfigError, match="dtypes"):
        run_bench_command("resnet20", "2", "float8", None, 1, 1, None)
    assert main(["bench", "--models", "resnet20", "--batch-sizes", "2", "--dtypes", "float8"]) == 2
    assert "float8" in capsys.readouterr().err
    assert main(["bench", "--models", "resnet2000"]) == 2


def test_cpu_peak_is_an_estimate_that_says_so():
    peak, source = device_peak_flops(jax.devices()[0], "float32")
    assert source.startswith("estimate") and peak > 1e9


def test_tiny_benchmark_reports_every_field(tmp_path):
    r = benchmark_one("resnet20", 2, model_options={"stage_sizes": (1, 1, 1), "width": 4}, steps=1, repeats=1)
    for key in ("train_images_per_second", "inference_images_per_second", "train_compile_seconds",
                "train_flops_per_step", "train_flops_per_second", "train_utilisation", "train_memory",
                "host_peak_rss_bytes"):
        assert r[key] is not None, key
    assert r["train_flops_per_step"] > 0 and 0 < r["train_utilisation"] < 1
    json.dumps(r)


def test_compile_only_remat_rows(capsys):
    tiny = {"stage_sizes": (1, 1, 1), "width": 4}
    r = benchmark_one("resnet20", 2, model_options=tiny, remat=True, compile_only=True)
    assert r["remat"] is True and r["train_memory"]["temp_bytes"] > 0 and r["train_flops_per_step"] > 0
    assert "train_images_per_second" not in r and "inference_images_per_second" not in r  # nothing was timed
    report = run_bench_command("resnet20", "2", "float32", None, 1, 1, None, tiny, remat="both", compile_only=True)
    assert [row["remat"] for row in report["results"]] == [False, True]
    table = capsys.readouterr().out.splitlines()
    assert "remat" in table[0] and table[1].split()[3] == "no" and table[2].split()[3] == "yes"
    with pytest.raises(ConfigError, match="remat"):
        run_bench_command("mlp", "2", "float32", None, 1, 1, None, remat="both")


def test_report_records_the_switches_that_change_speed(monkeypatch):
    from jaxdl.train.benchmark import benchmark

    monkeypatch.delenv("JAXDL_FAST_CONV", raising=False)
    monkeypatch.setenv("JAXDL_WINOGRAD", "0")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    tiny = {"stage_sizes": (1, 1, 1), "width": 4}
    env = benchmark(["resnet20"], [2], model_options=tiny, compile_only=True)["environment"]
    assert env["winograd"] == "0" and env["glibc_tunables"] == "glibc.malloc.hugetlb=1" and env["fast_conv"] == "1"
