"""Cheap text-token estimates for cost forecasts (no tokenizer download, no network)."""

from __future__ import annotations


def _is_wide(ch: str) -> bool:
    # CJK ideographs, kana, hangul and fullwidth forms cost roughly one token per character.
    code = ord(ch)
    return (
        0x3000 <= code <= 0x9FFF
        or 0xAC00 <= code <= 0xD7AF
        or 0xF900 <= code <= 0xFAFF
        or 0xFF00 <= code <= 0xFFEF
        or 0x20000 <= code <= 0x2FFFF
    )


def estimate_text_tokens(text: str) -> int:
    """About four characters per token for Latin text, one per CJK character; rounded up."""
    wide = sum(1 for ch in text if _is_wide(ch))
    narrow = len(text) - wide
    return wide + (narrow + 3) // 4
