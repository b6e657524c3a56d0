"""Provider registry. A provider plugs in with one module and one line here."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from imgtag.providers.base import ConfigError, Provider

# name -> "module:Class", imported lazily so `imgtag scan` never pays for SDK imports.
PROVIDERS: dict[str, str] = {
    "anthropic": "imgtag.providers.anthropic_provider:AnthropicProvider",
    "imagedescriber": "imgtag.providers.imagedescriber.provider:ImageDescriberProvider",
}


def create_provider(name: str, **settings: Any) -> Provider:
    target = PROVIDERS.get(name)
    if target is None:
        raise ConfigError(f"Unknown provider {name!r}: choose one of {', '.join(sorted(PROVIDERS))}.")
    module_name, class_name = target.split(":")
    cls = getattr(import_module(module_name), class_name)
    return cls(**settings)
