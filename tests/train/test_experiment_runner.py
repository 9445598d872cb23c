"""The shared command line of experiment scripts with their own run function (``run_script``)."""

import dataclasses

import pytest

from jaxdl.errors import ConfigError
from jaxdl.train.experiment import Option, run_script


@dataclasses.dataclass(frozen=True)
class _Config:
    epochs: int = 10
    encoder: str = "resnet20"
    encoder_options: tuple = (("width", 2),)


def _get_config():
    """A test experiment."""
    return _Config()


def _smoke(config):
    return dataclasses.replace(config, epochs=1)


def _run(config, out):
    if config.encoder == "bad":
        raise ConfigError("unknown encoder 'bad'; use a registered model name")
    return {"config": config, "out": out}


OPTIONS = [Option("--epochs", int), Option("--encoder", str, also=(("encoder_options", ()),))]


def test_defaults_smoke_and_overrides(tmp_path):
    got = run_script(_get_config, _run, "t", ["--out", str(tmp_path)], smoke=_smoke, options=OPTIONS)
    assert got["config"] == _Config() and got["out"] == tmp_path
    got = run_script(_get_config, _run, "t", ["--smoke"], smoke=_smoke, options=OPTIONS)
    assert got["config"].epochs == 1 and str(got["out"]) == "runs/t"
    # an explicit option wins over the smoke shrink; `also` clears the options of the replaced encoder
    got = run_script(_get_config, _run, "t", ["--smoke", "--epochs", "3", "--encoder", "vgg11"], smoke=_smoke,
                     options=OPTIONS)
    assert got["config"] == _Config(epochs=3, encoder="vgg11", encoder_options=())


def test_bad_input_is_one_line_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exc:
        run_script(_get_config, _run, "t", ["--encoder", "bad"], smoke=_smoke, options=OPTIONS)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == "t: error: unknown encoder 'bad'; use a registered model name\n"
    with pytest.raises(SystemExit) as exc:   # a wrong type is argparse's usage error, also code 2
        run_script(_get_config, _run, "t", ["--epochs", "x"], smoke=_smoke, options=OPTIONS)
    assert exc.value.code == 2
