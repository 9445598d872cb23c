"""The command line: listings, and bad input as one line with exit code 2 (no traceback)."""

import subprocess
import sys
from pathlib import Path

import pytest

from jaxdl.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, expected", [
    (["train", "--model", "lenet"], "lenet5"),
    (["train", "--dataset", "imagenet"], "digits"),
    (["train", "--optimizer", "adamm"], "adam"),
    (["train", "--schedule", "cosin"], "cosine"),
    (["train", "--loss", "nll"], "cross_entropy"),
    (["train", "--epochs", "-3"], ">= 1"),
    (["train", "--learning-rate", "abc"], "number"),
    (["train", "--augment", "rotate"], "flip"),
    (["train", "--model-options", "activation=swish", "--model", "mlp", "--epochs", "1"], "relu"),
    (["train", "--resume", "/nonexistent/run"], "does not exist"),
    (["train", "--target-accuracy", "94"], "give 0.94"),
    (["train", "--stop-at-target"], "needs a target accuracy"),
    # finetune joins multi-host runs as train does: its multi-host flags are read, not ignored
    (["finetune", "--model", "lenet5", "--dataset", "digits", "--init", "/nonexistent/w.safetensors",
      "--coordinator", "127.0.0.1:12345", "--num-processes", "2", "--process-id", "5"], "process id must be in [0, 2)"),
    (["summary", "resnet-50"], "resnet50"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, expected):
    if argv[0] == "summary" and expected == "resnet50":
        from jaxdl import models
        if "resnet50" not in models.available():
            expected = "unknown model"
    code, out, err = run(capsys, *argv, *(["--out", str(tmp_path / "r")] if argv[0] == "train"
                                            and "--resume" not in argv else []))
    assert code == 2, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "error" in lines[0] and expected in lines[0], lines[0]
    assert "Traceback" not in err


def test_missing_dataset_says_where_it_looked(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDL_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = run(capsys, "train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"),
                       "--out", str(tmp_path / "r"))
    assert code == 2
    assert str(tmp_path / "empty") in err and "download" in err
    assert not (tmp_path / "r").exists(), "a run that could not start must not leave a run folder behind"


def test_existing_run_folder_is_not_overwritten(capsys, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, _, err = run(capsys, "train", "--out", str(out))
    assert code == 2 and "--resume" in err
    assert (out / "precious.txt").read_text() == "keep me"


def test_subprocess_exit_code_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "jaxdl.cli", "train", "--model", "no_such_model"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "unknown model" in proc.stderr


def test_models_listing_and_summary(capsys):
    code, out, _ = run(capsys, "models", "--family", "lenet")
    assert code == 0 and "lenet5" in out and "60,850" in out
    code, out, _ = run(capsys, "summary", "lenet5")
    assert code == 0 and "total trainable parameters: 60,850" in out and "head" in out


def test_download_offline_is_a_clear_error(capsys, tmp_path, monkeypatch):
    import jaxdl.data as data

    if not hasattr(data, "download"):
        pytest.fail("jaxdl.data.download is missing")
    code, _, err = run(capsys, "download", "no_such_set", "--dest", str(tmp_path))
    assert code == 2 and "error" in err
