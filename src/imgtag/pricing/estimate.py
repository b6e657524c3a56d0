"""Tokens and dollars before any money is spent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from imgtag.ingest.sizing import HIGH_RES, STANDARD, VisionTier, fit_size, visual_tokens
from imgtag.presets import Preset
from imgtag.pricing.catalogue import ModelInfo, catalogue
from imgtag.pricing.costs import Usage, cost_usd
from imgtag.pricing.textcount import estimate_text_tokens
from imgtag.validate.schema import to_anthropic_schema

# Message framing, role markers and the structured-output preamble the API adds around a schema.
REQUEST_OVERHEAD_TOKENS = 30
DETAIL_LONG_EDGE = {"low": 768}


def max_long_edge_for(preset: Preset) -> int | None:
    return DETAIL_LONG_EDGE.get(preset.detail)


def tier_for(preset: Preset, model: ModelInfo) -> VisionTier:
    # "standard" detail never needs more than the standard tier's pixels, even on high-res models.
    return model.tier if preset.detail == "high" else STANDARD


def prompt_tokens(preset: Preset, model: ModelInfo) -> int:
    schema_text = json.dumps(to_anthropic_schema(preset.schema), ensure_ascii=False)
    text = preset.system + preset.instruction + schema_text
    return int(estimate_text_tokens(text) * model.tokenizer_factor) + REQUEST_OVERHEAD_TOKENS


def image_tokens(width: int, height: int, preset: Preset, model: ModelInfo) -> int | None:
    """None when the model's image-token rule is unknown (a local server's model): say so, never invent."""
    edge = min((e for e in (max_long_edge_for(preset), model.max_edge) if e), default=None)
    out_w, out_h = fit_size(width, height, tier_for(preset, model), edge)
    if model.image_tokens != "claude":
        from imgtag.pricing.image_rules import other_image_tokens

        return other_image_tokens(out_w, out_h, model)
    return visual_tokens(out_w, out_h)


@dataclass(frozen=True)
class RequestEstimate:
    input_tokens: int
    output_tokens: int

    def usage(self) -> Usage:
        return Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens)


def estimate_request(image_visual_tokens: int, preset: Preset, model: ModelInfo) -> RequestEstimate:
    return RequestEstimate(
        input_tokens=image_visual_tokens + prompt_tokens(preset, model),
        output_tokens=int(preset.expected_output_tokens * model.tokenizer_factor),
    )


@dataclass
class ModelEstimate:
    model: str
    images: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    standard_usd: float | None = 0.0
    batch_usd: float | None = 0.0
    tokens_known: bool = True  # False: the model's image tokens are unknown; input_tokens counts text only


@dataclass
class Estimator:
    """Accumulates per-model totals over distinct images (width/height after orientation)."""

    preset: Preset
    models: list[str] = field(default_factory=lambda: list(catalogue().models))
    totals: dict[str, ModelEstimate] = field(init=False)

    def __post_init__(self) -> None:
        self.totals = {m: ModelEstimate(m) for m in self.models}
        self._prompt = {m: prompt_tokens(self.preset, catalogue().get(m)) for m in self.models}

    def add(self, width: int, height: int) -> None:
        for model_id, total in self.totals.items():
            info = catalogue().get(model_id)
            img = image_tokens(width, height, self.preset, info)
            if img is None:
                total.tokens_known = False
            est = RequestEstimate(
                input_tokens=(img or 0) + self._prompt[model_id],
                output_tokens=int(self.preset.expected_output_tokens * info.tokenizer_factor),
            )
            total.images += 1
            total.input_tokens += est.input_tokens
            total.output_tokens += est.output_tokens
            # Unknown image tokens leave the cost unknown too, unless the model is free (a local server).
            free = info.prices is not None and info.prices.input == 0
            std = cost_usd(info.prices, est.usage()) if img is not None or free else None
            bat = cost_usd(info.prices, est.usage(), batch=True) if img is not None or free else None
            total.standard_usd = None if std is None or total.standard_usd is None else total.standard_usd + std
            total.batch_usd = None if bat is None or total.batch_usd is None else total.batch_usd + bat


__all__ = ["HIGH_RES", "STANDARD", "Estimator", "ModelEstimate", "RequestEstimate", "estimate_request"]
