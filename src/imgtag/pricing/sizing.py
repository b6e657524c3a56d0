"""Patch maths for vision models: how big an image may be, and what it costs in visual tokens.

Anthropic counts images in 28x28-px patches ("visual tokens") and resizes anything over a tier's
limits on the server. We resize locally to exactly the size the server would pick, so it never
resizes again (wasted upload bytes, a second lossy resample) and our token estimate is exact.
See docs api-facts.md section A.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PATCH = 28


@dataclass(frozen=True)
class VisionTier:
    """Server-side image limits of one model generation."""

    name: str  # "standard" | "high"
    max_long_edge: int  # px
    max_patches: int  # visual tokens
    patch: int = PATCH


# Claude models before 4.7.
STANDARD = VisionTier(name="standard", max_long_edge=1568, max_patches=1568)
# Claude 4.7 and later, applied automatically by the server.
HIGH_RES = VisionTier(name="high", max_long_edge=2576, max_patches=4784)

TIERS: dict[str, VisionTier] = {STANDARD.name: STANDARD, HIGH_RES.name: HIGH_RES}


def visual_tokens(width: int, height: int, patch: int = PATCH) -> int:
    """Number of patch-sized tiles covering the image: ceil(w/patch) * ceil(h/patch)."""
    if width <= 0 or height <= 0:
        return 0
    return math.ceil(width / patch) * math.ceil(height / patch)


def _short_for(long_px: int, long0: int, short0: int) -> int:
    # Aspect ratio kept to the nearest pixel; never zero, never more than the original.
    return min(short0, max(1, round(long_px * short0 / long0)))


def fit_size(width: int, height: int, tier: VisionTier, max_long_edge: int | None = None,
             min_short_edge: int | None = None) -> tuple[int, int]:
    """Largest aspect-preserving size within the tier's edge and patch limits; never upscales.

    The long edge is capped at ``min(tier.max_long_edge, max_long_edge)`` and the result costs at
    most ``tier.max_patches`` visual tokens. "Largest" is by the long edge: one more pixel there
    would break a limit (or upscale). Agrees with the server rule, e.g. 1920x1080 on STANDARD ->
    (1456, 819) at 1560 tokens.

    ``min_short_edge`` keeps a detail level's cap from shrinking a long, thin image below that short side
    (a 3:1 panorama at 512 px would be 171 px tall): the cap is raised as far as the tier allows.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    edge_cap = tier.max_long_edge if max_long_edge is None else min(tier.max_long_edge, max_long_edge)
    landscape = width >= height
    long0, short0 = (width, height) if landscape else (height, width)
    if min_short_edge and max_long_edge is not None:
        edge_cap = max(edge_cap, min(tier.max_long_edge, math.ceil(min_short_edge * long0 / short0)))
    edge_cap = max(1, edge_cap)

    def fits(long_px: int) -> bool:
        short_px = _short_for(long_px, long0, short0)
        return visual_tokens(long_px, short_px, tier.patch) <= tier.max_patches

    # Token count only grows with the long edge (the short edge is monotone in it), so a binary
    # search finds the largest long edge that fits; 1 px always fits (one patch).
    lo, hi = 1, min(long0, edge_cap)
    if fits(hi):
        lo = hi
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
    short_px = _short_for(lo, long0, short0)
    return (lo, short_px) if landscape else (short_px, lo)
