"""Presets: prompts, answer schema, image detail and token limits, versioned. See model.py."""

from imgtag.presets.checks import DETAIL_LEVELS
from imgtag.presets.errors import PresetError
from imgtag.presets.language import language_name
from imgtag.presets.model import (
    BUILTIN_NAMES,
    DEFAULT_PRESET,
    DetailLevel,
    Preset,
    builtin_names,
    compute_version,
    load_preset,
    with_detail,
)

__all__ = [
    "BUILTIN_NAMES",
    "DEFAULT_PRESET",
    "DETAIL_LEVELS",
    "DetailLevel",
    "Preset",
    "PresetError",
    "builtin_names",
    "compute_version",
    "language_name",
    "load_preset",
    "with_detail",
]
