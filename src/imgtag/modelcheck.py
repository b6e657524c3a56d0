"""Is the model one the provider offers, and does imgtag know its prices? One warning, before the run spends.

The provider's own list (`GET /v1/models` on Anthropic and OpenAI-compatible servers) is asked only for a model
the catalogue does not know; when the list cannot be had, the catalogue alone decides.
"""

from __future__ import annotations

from typing import Any

from imgtag.configfile import did_you_mean


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
    price_note = ("" if has_prices else "; its prices are unknown, so costs show as unknown (give --price-in and "
                  "--price-out to count them and to use --budget)")
    if listed is not None and model_id not in listed:
        hint = did_you_mean(model_id, set(listed) | set(known))
        return f"model {model_id!r} is not in the {provider} model list for this key{hint}{price_note}"
    if listed is None and model_id not in known:
        hint = did_you_mean(model_id, known)
        return f"model {model_id!r} is not in imgtag's catalogue{hint}{price_note}"
    if not has_prices:
        return f"model {model_id!r} has no prices in imgtag's catalogue{price_note}"
    return None


async def check(provider: Any, provider_name: str, model: Any) -> str | None:
    from imgtag.pricing.catalogue import catalogue

    if getattr(provider, "billed_in_credits", False):
        return None  # one model, the provider's own, billed in its credits: nothing to check or to price
    cat = catalogue()
    if cat.lookup(model.id) is not None:
        return None  # a catalogued model: known and priced, no request needed
    known = list(cat.models) + list(cat.aliases)
    listed = await provider_models(provider) if provider is not None else None
    return warning(model.id, provider_name, listed, known, model.prices is not None)
