"""URLs fit to show: in messages, in the store's target record, never with a password."""

from __future__ import annotations


def public_url(url: str | None) -> str | None:
    """A URL without any user:password part, fit to show."""
    if not url:
        return None
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
