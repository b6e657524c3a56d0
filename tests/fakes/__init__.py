"""Wire-level test doubles for the vendor APIs imgtag talks to.

Names are loaded lazily: importing the submodule eagerly here would make
``python -m tests.fakes.anthropic_server`` load it twice (runpy warns about exactly that).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FakeAnthropicServer", "FakeConfig", "FakeStats", "image_key"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".anthropic_server", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
