"""The one exception preset loading raises."""

from __future__ import annotations

from imgtag.config.errors import ConfigurationError


class PresetError(ConfigurationError):
    """A preset cannot be loaded. The message is one line naming the file (or preset) and the problem."""
