"""The one settings path: a value given (a flag, or an argument of the Python API), else the environment, else
imgtag.toml, else the default (docs/config.md). The CLI and the Python API both read their settings here.

imgtag.toml is read only here (config/tomlfile.py checks it key by key); its [models."..."] table goes from here to
pricing (`extra_models.use_models_table`), which never looks for the file itself. Kept light: a configuration
error must be reported in a fraction of a second (bench/startup.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from imgtag.config.errors import UsageError
from imgtag.config.options import option

DEFAULT_OUT = Path("imgtag-out")
DEFAULT_PRESET = "ecommerce"
DEFAULT_PROVIDER = "anthropic"
DEFAULT_FORMATS = "csv,jsonl"
DEFAULT_CONCURRENCY = 64

# setting -> the environment variable that sets it (the others come from a flag or imgtag.toml only)
ENVIRONMENT: dict[str, str] = {
    "preset": "IMGTAG_PRESET", "model": "IMGTAG_MODEL", "provider": "IMGTAG_PROVIDER", "lang": "IMGTAG_LANG",
    "categories": "IMGTAG_CATEGORIES", "out": "IMGTAG_OUT",
}


@dataclass(frozen=True)
class Settings:
    """imgtag.toml's checked values and the environment, asked setting by setting."""

    file: Mapping[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @classmethod
    def load(cls, config_file: str | os.PathLike[str] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """The settings for a command: `config_file` (default ./imgtag.toml, which may be missing). A broken file
        is a ConfigurationError naming the file and the key. Its models become the ones pricing knows."""
        from imgtag.config import tomlfile

        path = Path(config_file) if config_file is not None else Path.cwd() / tomlfile.FILE_NAME
        values, models = _read(str(path.absolute()), _stamp(path))
        if models is not None or "imgtag.pricing.extra_models" in sys.modules:  # else pricing needs telling nothing
            from imgtag.pricing.extra_models import use_models_table

            use_models_table(models)
        return cls(values, os.environ if environ is None else environ)

    def pick(self, given: Any, key: str, default: Any = None) -> Any:
        """`given` when it is not None, else the setting's environment variable (when set and not empty), else
        imgtag.toml's value, else `default`."""
        if given is not None:
            return given
        variable = ENVIRONMENT.get(key)
        if variable and self.environ.get(variable):
            return self.environ[variable]
        return self.file.get(key, default)

    def source(self, given: Any, key: str, flag: str) -> str:
        """Where the value `pick` chose came from, as a person fixes it: the flag, the variable or the file."""
        variable = ENVIRONMENT.get(key)
        if given is not None:
            # typer reads the variable into the flag's value: name the variable when that is where it came from
            return variable if variable and self.environ.get(variable) == given else flag
        if variable and self.environ.get(variable):
            return variable
        return f"imgtag.toml {key}"

    def out(self, given: str | os.PathLike[str] | None) -> Path:
        return Path(self.pick(given, "out", DEFAULT_OUT))

    def base_url(self, given: str | None, provider: str | None) -> dict[str, Any]:
        """Provider settings for the server: `given`, else imgtag.toml's base_url unless the provider's own
        <PROVIDER>_BASE_URL variable is set (every built-in provider reads that variable itself)."""
        if given:
            return {"base_url": given}
        name = self.pick(provider, "provider", DEFAULT_PROVIDER)
        if self.environ.get(f"{name.upper()}_BASE_URL"):
            return {}
        url = self.file.get("base_url")
        return {"base_url": url} if url else {}

    def server(self, given: str | None, meta: Mapping[str, Any] | None) -> dict[str, Any]:
        """The server a command about a folder's batches (`status`, `cancel`) talks to: `given` (--base-url), else
        the one the folder's latest run used (its target record), else what `run` would use."""
        if given:
            return {"base_url": given}
        if meta and meta.get("base_url"):
            return {"base_url": meta["base_url"]}
        return self.base_url(None, meta.get("provider") if meta else None)

    def categories(self, given: str | list[str] | None) -> list[str] | None:
        return parse_categories(self.pick(given, "categories"), self.source(given, "categories", option("categories")))


def parse_categories(value: str | list[str] | None, label: str | None = None) -> list[str] | None:
    """"a,b,c", "@file.txt" (one a line, # for comments) or a list; None when none was given. A value that names
    no category (",,", a file of comments) is refused: running without the list the user meant to give is not
    what they asked for. `label` is where the value was set (the flag, the variable or imgtag.toml)."""
    if not value or (isinstance(value, str) and not value.strip()):
        return None
    label = label or option("categories")
    if isinstance(value, list):  # a TOML list in imgtag.toml, or a Python list
        items = [str(item).strip() for item in value]
    elif value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"{label} {value}: cannot read the file ({reason})") from None
        items = [line.strip() for line in text.splitlines()]
    else:
        items = [part.strip() for part in value.replace("，", ",").split(",")]
    names = [item for item in items if item and not item.startswith("#")]
    if not names:
        raise UsageError(f"{label} {value!r} names no category: give them as a,b,c or @file.txt (one a line)")
    return names


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)


@lru_cache(maxsize=8)
def _read(path: str, stamp: tuple[int, int] | None) -> tuple[dict[str, Any], Any]:
    """The checked settings and the raw [models] table of the file at `path`, read again when it changes."""
    from imgtag.config import tomlfile
    from imgtag.export import parse_formats  # a light registry: no exporter is imported

    if stamp is None:
        return {}, None
    return tomlfile.read(Path(path), check_formats=parse_formats)
