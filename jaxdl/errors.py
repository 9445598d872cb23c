"""Exception types users can catch. The CLI turns each into one line and exit code 2."""

from __future__ import annotations


class JaxdlError(Exception):
    """Base class of jaxdl's user-facing errors (bad input, missing data, corrupt files)."""


class ConfigError(JaxdlError, ValueError):
    """An unknown name or a bad value in a configuration (model, optimizer, schedule, flag)."""


class DataError(JaxdlError, ValueError):
    """A data set could not be read."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The files of a data set are not where jaxdl looked; the message says where it looked and how to get them."""


class CorruptFileError(DataError):
    """A file exists but its content is not what its format requires; the message names the file."""


class DownloadError(DataError):
    """A download failed (no network, bad checksum); nothing partial is left behind."""


class TrainingError(JaxdlError, RuntimeError):
    """Training cannot go on (see subclasses)."""


class NonFiniteLossError(TrainingError, FloatingPointError):
    """The loss became NaN or infinite; the message gives the step. Checkpoints already written are kept."""

    def __init__(self, step: int, value: float):
        self.step, self.value = int(step), float(value)
        super().__init__(f"loss became {value} at step {step}; training stopped, the last good checkpoint "
                         f"is kept (try a lower --learning-rate or gradient clipping with --clip-norm)")


class ResumeError(JaxdlError, ValueError):
    """``--resume`` pointed at a folder with no usable run (bad input: the CLI exits with 2)."""


class WeightImportError(JaxdlError, ValueError):
    """Weights could not be imported into a model (unknown model, unreadable file, missing or unexpected keys,
    shape mismatches); the message names the keys. Nothing is loaded partially."""
