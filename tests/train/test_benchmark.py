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
    assert "model_name" in env["cpu_description"]
    assert "jaxdl_revision" in env


def test_report_records_the_jaxdl_commit(tmp_path):
    """Benchmark JSON says which commit produced it (+dirty for uncommitted changes to tracked files), and
    nothing (None) outside the top of a git checkout, so a number is never tied to the wrong code."""
    import shutil
    import subprocess

    from jaxdl.train.benchmark import source_revision

    if shutil.which("git") is None:
        assert source_revision(tmp_path) is None
        return
    repo = tmp_path / "repo"
    (repo / "jaxdl").mkdir(parents=True)
    (repo / "jaxdl" / "a.py").write_text("x = 1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "jaxdl/a.py"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "one"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert source_revision(repo) == head
    (repo / "untracked.txt").write_text("ignored\n")  # untracked files do not make it dirty
    assert source_revision(repo) == head
    (repo / "jaxdl" / "a.py").write_text("x = 2\n")
    assert source_revision(repo) == head + "+dirty"
    assert source_revision(repo / "jaxdl") is None  # not the top of the checkout
    assert source_revision(tmp_path / "elsewhere") is None


def test_cpu_description_reads_generation_and_isa(tmp_path):
    """The report says which CPU generation and vector ISA it ran on (figures differ between AVX2 and AVX-512)."""
    from jaxdl.train.benchmark import cpu_description

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
                    "model name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx fma avx2 avx512f avx512bw avx512_bf16\n\n"
                    "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    cpu = cpu_description(str(info))
    assert cpu == {"model_name": "AMD EPYC 9R14", "family": "25", "model": "17",
                   "isa": ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16"]}
    info.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2 fma\n")
    assert cpu_description(str(info))["isa"] == ["avx", "avx2", "fma"]
    assert set(cpu_description(str(tmp_path / "missing"))) == {"model_name"}


@pytest.mark.parametrize("argv, message", [
    (["--modles", "resnet20"], "unrecognized arguments: --modles"),   # a typo is not silently ignored
    (["--models", "resnet2000", "--steps", "1"], "unknown model 'resnet2000'"),
    (["--smoke", "--dtypes", "float8"], "'float8' is not one of"),
    (["--smoke", "--steps", "0"], "expected a number >= 1"),
])
def test_benchmark_script_bad_input_is_one_line_exit_2(argv, message):
    """experiments/benchmark.py: bad input is one line on stderr and exit code 2, no traceback, nothing run."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "experiments" / "benchmark.py"
    done = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "JAXDL_ALLOCATOR": "system"})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "img/s" not in done.stdout
