"""The errors a user can cause, as one tree: catch `OpenGraphAUError` to catch them all.

Every message is one line that names the thing at fault and says what to do. `param` names the
argument of the Python API at fault (``"checkpoint"``, ``"threshold"``, ...) and `value` what it
was, so a front end can speak of its own spelling of that argument: the CLI turns
``param="output_dir"`` into ``--output-dir``. Library code never speaks of flags.
"""

from __future__ import annotations


class OpenGraphAUError(Exception):
    """Base of every error this package raises on purpose; the message is one line."""

    def __init__(self, reason: str, *, param: str | None = None, value: object = None) -> None:
        self.reason, self.param, self.value = reason, param, value
        super().__init__(self._text())

    def _text(self) -> str:
        return self.reason if self.value is None else f"{self.value}: {self.reason}"


class ConfigError(OpenGraphAUError, ValueError):
    """An argument with a value that cannot work (a threshold of 2, a batch size of 0)."""

    def _text(self) -> str:
        return f"{self.param}={self.value!r}: {self.reason}"


class CheckpointError(OpenGraphAUError):
    """A checkpoint file that cannot be read or does not hold an OpenGraphAU model."""


class DeviceError(OpenGraphAUError):
    """A device or precision this machine cannot run."""


class InputError(OpenGraphAUError):
    """An input (image, video, camera, list file, results folder) that cannot be used. A run
    lists such an input in errors.csv and goes on; with no usable input at all it stops."""


class ImageError(InputError):
    """An image file that cannot be decoded; `reason` is why, without the path."""


class VideoError(InputError):
    """A video or camera that cannot be opened or read."""


class OutputError(OpenGraphAUError):
    """A problem with the output folder or a file in it; the run stops, earlier results stay."""


class BusyError(OutputError):
    """The output folder is in use by another run."""


class ExportError(OpenGraphAUError):
    """An exported model file that does not reproduce the model."""


def describe(exc: BaseException) -> str:
    """One line for an exception no code here raised on purpose (a library's, a bug's): its type
    and the first line of its message, for errors.csv and the terminal."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class ResultsExistError(OutputError):
    """The output folder holds an earlier run's files, and neither continuing that run nor
    replacing its results was asked for."""


class UntrainedWarning(UserWarning):
    """A model runs on random weights: its numbers mean nothing (a smoke test)."""
