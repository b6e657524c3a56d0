"""The one exception hierarchy a user of imgtag meets, from the command line or from Python.

Every problem imgtag reports to a person is an `ImgtagError`: its message is one sentence (what is wrong and
what to do), and `exit_code` is what `imgtag` exits with when the CLI meets it (2 for usage and configuration,
unless the error says otherwise). The CLI catches this one class (cli/commands.py); a Python caller can catch it, or one
of the five kinds below. Modules raise the most specific kind they know, often through a subclass named for
where it comes from (`PresetError`, `ModelConfigError`, `ExportRefused`, ...), which stays importable there.

Kept free of imports beyond the exit codes: every stage imports this module, and a configuration error must be
reported without loading anything heavy (bench/startup.py).
"""

from __future__ import annotations

from imgtag.config.exits import EXIT_CONFIG


class ImgtagError(Exception):
    """Something imgtag cannot do as asked; `str(error)` is one sentence for a person."""

    exit_code: int = EXIT_CONFIG

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)


class ConfigurationError(ImgtagError, ValueError):
    """Settings that cannot work: imgtag.toml, a preset, a model entry, a provider or its key, a cluster."""


class UsageError(ImgtagError, ValueError):
    """Arguments that cannot work: inputs naming no file, an unusable --out, a flag out of range, a target
    the folder does not hold, an output file in the way."""


class ProviderError(ImgtagError):
    """The provider cannot serve this run: no batch API, a bad key or an unknown model that stopped the run,
    or (for `imgtag.describe`) an image it answered with no usable result."""


class BudgetError(ImgtagError):
    """A budget that cannot be kept, such as one given for a model whose prices are unknown."""


class StoreInUseError(ImgtagError, RuntimeError):
    """Another imgtag process is writing to this output folder."""


__all__ = ["BudgetError", "ConfigurationError", "ImgtagError", "ProviderError", "StoreInUseError", "UsageError"]
