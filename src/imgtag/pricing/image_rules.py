"""Image tokens for models that are not Claude: OpenAI's documented rules, or "unknown".

OpenAI (vision guide, 2025): "openai-tiles" models (GPT-4o, GPT-4.1) fit the image within 2048x2048, then
scale it so the short side is at most 768 px, and charge base + per_tile x (512 px tiles). "openai-patches"
models (GPT-4.1 mini/nano, o4-mini) count 32 px patches, capped at 1536 by shrinking the image, times a
per-model multiplier. Servers such as vLLM or Ollama count with the model's own vision encoder, which imgtag
does not know: estimates then say "unknown" instead of inventing a number.

What a request *reserves* (the --budget check and the pacer's token buckets) must never be less than it can
cost, so it cannot say "unknown": ``reservation_image_tokens`` gives Claude models Claude's own rule (in
../shared/api-facts.md), and every other model the larger of its rule above (when the catalogue has one) and
an upper bound. OpenAI's tile and patch rules are recorded from OpenAI's vision guide, not from api-facts, so they
are not trusted alone. The bound counts 16-px patches with no merging, the densest layout among common vision
encoders (Pixtral's; Qwen-VL, InternVL, LLaVA and GLM-4V merge 14-px patches or use fixed-size tiles, which
cost fewer tokens at the sizes imgtag sends): about 3x Claude's 28-px count. An encoder that pads a small image
to a large fixed size could still cost more; a priced local model should say its rule in imgtag.toml.
"""

from __future__ import annotations

import math

from imgtag.pricing.catalogue import ModelInfo

PATCH = 32
MAX_PATCHES = 1536
BOUND_PATCH = 16  # px: the upper bound's patch size (see above)


def tile_tokens(width: int, height: int, base: float, per_tile: float) -> int:
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return int(base + per_tile * math.ceil(w / 512) * math.ceil(h / 512))


def patch_tokens(width: int, height: int, multiplier: float) -> int:
    patches = math.ceil(width / PATCH) * math.ceil(height / PATCH)
    if patches > MAX_PATCHES:
        shrink = math.sqrt(PATCH * PATCH * MAX_PATCHES / (width * height))
        w, h = width * shrink, height * shrink
        # Shrink a little more so a whole number of patches fits the short side's patch count.
        shrink = min(math.floor(w / PATCH) / (w / PATCH), math.floor(h / PATCH) / (h / PATCH))
        w, h = w * shrink, h * shrink
        patches = math.ceil(w / PATCH) * math.ceil(h / PATCH)
    return int(patches * multiplier)


def other_image_tokens(width: int, height: int, model: ModelInfo) -> int | None:
    """Tokens for one image of this size (as sent), or None when the model's rule is unknown."""
    params = model.image_token_params
    if model.image_tokens == "openai-tiles" and len(params) >= 2:
        return tile_tokens(width, height, params[0], params[1])
    if model.image_tokens == "openai-patches" and params:
        return patch_tokens(width, height, params[0])
    return None


def reservation_image_tokens(width: int, height: int, claude_tokens: int, model: ModelInfo) -> int:
    """Tokens to reserve for one image of this size as sent; ``claude_tokens`` is preprocessing's 28-px count."""
    if model.image_tokens == "claude":
        return claude_tokens
    bound = math.ceil(width / BOUND_PATCH) * math.ceil(height / BOUND_PATCH)
    return max(bound, other_image_tokens(width, height, model) or 0)
