"""Is the model one the provider offers, and does imgtag know its prices? One warning, before the run spends.

The provider's own list (`GET /v1/models` on Anthropic and OpenAI-compatible servers) is asked only for a model
imgtag does not know (the catalogue, the built-in OpenAI models, imgtag.toml); when the list cannot be had, what
imgtag knows decides. `run --dry-run` and `scan` send nothing paid, yet ask the list too (one free request, when the
provider's credentials or base URL are set), so a typo is caught wherever the model is named.
"""

from __future__ import annotations

from typing import Any

from imgtag.config.options import option
from imgtag.config.tomlfile import did_you_mean


async def provider_models(provider: Any) -> list[str] | None:
    """The model ids the provider lists for this key, or None when it has no list (or it cannot be read)."""
    models = getattr(getattr(provider, "client", None), "models", None)
    if models is None or not hasattr(models, "list"):
        return None
    try:
        return [m.id async for m in models.list()]
    except Exception:  # a gateway without the endpoint, a network fault: fall back to the catalogue
        return None


def warning(model_id: str, provider: str, listed: list[str] | None, known: list[str], has_prices: bool) -> str | None:
    """One sentence for the user, or None when the model is known and priced."""
    price_note = ("" if has_prices else "; its prices are unknown, so costs show as unknown (set them in imgtag.toml "
                  f"[models.\"{model_id}\"] input and output, or with {option('price_in')} and {option('price_out')}, "
                  f"to count them and to use {option('budget')})")
    if listed is not None and model_id not in listed:
        # only names this key can use: a catalogue model of another provider (gpt-4o for Anthropic) would 404
        hint = did_you_mean(model_id, served_names(listed))
        return f"model {model_id!r} is not in the {provider} model list for this key{hint}{price_note}"
    if listed is None and model_id not in known:
        hint = did_you_mean(model_id, known)
        return f"model {model_id!r} is not in imgtag's catalogue{hint}{price_note}"
    if not has_prices:
        return f"model {model_id!r} has no prices in imgtag's catalogue{price_note}"
    return None


def served_names(listed: list[str]) -> set[str]:
    """The listed ids and the catalogue's short names for them (claude-haiku-4-5 for claude-haiku-4-5-20251001)."""
    from imgtag.pricing.catalogue import catalogue

    aliases = catalogue().aliases
    return {*listed, *(aliases[m] for m in listed if m in aliases)}


def known_models() -> list[str]:
    """Every model name imgtag knows: the catalogue (and its aliases), the built-in OpenAI models, imgtag.toml's."""
    from imgtag.pricing.catalogue import catalogue
    from imgtag.pricing.extra_models import builtin_model_names, user_model_names

    cat = catalogue()
    return [*cat.models, *cat.aliases, *builtin_model_names(), *user_model_names()]


async def check(provider: Any, provider_name: str, model: Any) -> str | None:
    from imgtag.pricing.catalogue import catalogue

    if getattr(provider, "billed_in_credits", False):
        return None  # one model, the provider's own, billed in its credits: nothing to check or to price
    if catalogue().lookup(model.id) is not None:
        return None  # a model imgtag knows: no request needed
    listed = await provider_models(provider) if provider is not None else None
    return warning(model.id, provider_name, listed, known_models(), model.prices is not None)


LIST_TIMEOUT_S = 10.0  # the model list of a command that sends nothing else: never worth a long wait


async def check_without_sending(provider_name: str, settings: dict[str, Any], model: Any) -> str | None:
    """`check` for `--dry-run` and `scan`: a provider opened only to read its model list, when its credentials or
    base URL are set (without them, what imgtag knows decides)."""
    from imgtag.pricing.catalogue import catalogue
    from imgtag.providers import provider_class
    from imgtag.providers.base import ConfigError

    if catalogue().lookup(model.id) is not None:
        return None  # known: nothing to ask, and no SDK to import
    try:
        cls = provider_class(provider_name)
    except ConfigError:
        return None  # an unknown provider is reported on its own
    if cls.billed_in_credits:
        return None
    try:
        provider = cls(**{**settings, "timeout": LIST_TIMEOUT_S})
    except ConfigError:  # no key and no base URL: the provider cannot be asked
        provider = None
    try:
        return await check(provider, provider_name, model)
    finally:
        if provider is not None:
            await provider.aclose()
