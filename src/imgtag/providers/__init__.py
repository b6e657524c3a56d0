"""Provider registry: the built-in providers plus any installed package's `imgtag.providers` entry points.

A built-in provider plugs in with one module and one line in BUILTIN. A third-party package declares, in its
pyproject.toml, ``[project.entry-points."imgtag.providers"] myname = "mypackage.module:MyProvider"``.
Everything is imported lazily, so `imgtag scan` never pays for SDK imports, and a package that fails to
import costs one line of explanation, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from imgtag.config.runconfig import RunConfig, Target
from imgtag.presets import load_preset, with_detail
from imgtag.pricing.catalogue import catalogue
from imgtag.providers.base import ConfigError, Provider
from imgtag.store import WorkKey

ENTRY_POINT_GROUP = "imgtag.providers"

# name -> "module:Class"
BUILTIN: dict[str, str] = {
    "anthropic": "imgtag.providers.anthropic_provider:AnthropicProvider",
    "openai": "imgtag.providers.openai_provider:OpenAIProvider",
    "imagedescriber": "imgtag.providers.imagedescriber.provider:ImageDescriberProvider",
}
PROVIDERS = BUILTIN  # the old name, kept for callers that read it


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    target: str           # "module:Class"
    package: str          # distribution that provides it ("imgtag" for built-ins)


def available() -> dict[str, ProviderSpec]:
    """Every installed provider by name; a built-in wins over an entry point of the same name."""
    from importlib import metadata  # scanning installed packages costs ~10-20 ms: only when asked

    specs: dict[str, ProviderSpec] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        package = dist.metadata["Name"] if dist is not None else "unknown package"
        specs.setdefault(ep.name, ProviderSpec(ep.name, ep.value, package))
    for name, target in BUILTIN.items():
        specs[name] = ProviderSpec(name, target, "imgtag")
    return dict(sorted(specs.items()))


def provider_class(name: str) -> type[Provider]:
    """The class registered under `name`; ConfigError (one sentence) when unknown or when it fails to load."""
    # A built-in wins over an entry point of the same name anyway: no need to scan installed packages for it.
    spec = ProviderSpec(name, BUILTIN[name], "imgtag") if name in BUILTIN else available().get(name)
    if spec is None:
        from imgtag.config.tomlfile import did_you_mean

        choices = available()
        raise ConfigError(f"unknown provider {name!r}{did_you_mean(name, choices)}: choose one of "
                          f"{', '.join(choices)}")
    try:
        module_name, _, class_name = spec.target.partition(":")
        cls = getattr(import_module(module_name), class_name)
    except Exception as exc:  # any import-time error of a third-party package: one line, never a traceback
        raise ConfigError(f"provider {name!r} from package {spec.package} could not be loaded "
                          f"({spec.target}): {type(exc).__name__}: {_one_line(exc)}") from None
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"provider {name!r} from package {spec.package} is not an imgtag Provider "
                          f"({spec.target}).")
    return cls


def create_provider(name: str, **settings: Any) -> Provider:
    return provider_class(name)(**settings)


def resolve_target(cfg: RunConfig) -> Target:
    """The preset, model and work key this run is for; the provider's hook may resolve the model's name
    (e.g. a local server's only model)."""
    preset = with_detail(load_preset(cfg.preset, lang=cfg.lang, categories=cfg.categories), cfg.detail, cfg.max_edge)
    if cfg.provider == "anthropic":
        # The catalogue is Anthropic's table; skipping the hook spares `scan` a second of SDK import.
        model = catalogue().get(cfg.model or catalogue().default_model)
    else:
        cls = provider_class(cfg.provider)
        model = cls.resolve_model(catalogue().get(cfg.model or cls.default_model or catalogue().default_model),
                                  dict(cfg.provider_settings))
    if cfg.price_in is not None and cfg.price_out is not None:
        from imgtag.pricing.user_prices import with_prices

        model = with_prices(model, cfg.price_in, cfg.price_out)
    return Target(preset, model, WorkKey(preset.version, cfg.provider, model.id))


def open_provider(cfg: RunConfig) -> Provider:
    settings = dict(cfg.provider_settings)
    settings.setdefault("timeout", cfg.timeout)
    return create_provider(cfg.provider, **settings)


def describe_installed() -> list[dict[str, Any]]:
    """One entry per installed provider for `imgtag providers`: name, package, capabilities or the load error."""
    rows: list[dict[str, Any]] = []
    for spec in available().values():
        row: dict[str, Any] = {"name": spec.name, "package": spec.package, "target": spec.target}
        try:
            caps = provider_class(spec.name).capabilities
        except ConfigError as exc:
            row["error"] = str(exc)
        else:
            row["capabilities"] = {
                "native_schema": caps.native_schema, "batch": caps.batch,
                "image_formats": list(caps.image_formats), "max_image_edge": caps.max_image_edge,
                "max_images_per_request": caps.max_images_per_request,
            }
        rows.append(row)
    return rows


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or "no message"
