"""The one exception preset loading raises."""

from __future__ import annotations


class PresetError(ValueError):
    """A preset cannot be loaded. The message is one line naming the file (or preset) and the problem."""
