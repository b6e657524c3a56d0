"""Tokens and dollars before any money is spent, caching included.

Per model and mode: every image costs its visual tokens, the instruction and the output; the shared prefix
(output schema + system prompt [+ guide]) is either sent uncached on every request or, where pricing/prefix.py
caches it, written once (1.25x for 5 minutes in sync mode, 2x for 1 hour in batch mode) and read at 0.1x by
every later request. The sync engine sends one request first so only one write is paid (request/warmup.py);
a batch is assumed to hit the cache after its first request (the fake does; the real API promises "30% to
98%" hits, so a real batch can cost a little more than the batch figure).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from imgtag.presets import Preset
from imgtag.presets.packed import LABEL_FIELD, label_for, packed_preset
from imgtag.pricing.bands import Bands
from imgtag.pricing.catalogue import ModelInfo, catalogue
from imgtag.pricing.costs import Usage, priced
from imgtag.pricing.prefix import PrefixPlan, plan_prefix
from imgtag.pricing.sizing import HIGH_RES, STANDARD, VisionTier, fit_size, visual_tokens
from imgtag.pricing.textcount import estimate_text_tokens

# Message framing and role markers around the user turn; a guess (the fake bills none, the API a few).
REQUEST_OVERHEAD_TOKENS = 4
# Long-edge cap per detail level: "low" is enough to tell a product's type, colour and style (docs/presets.md),
# and 504 = 18 whole 28-px patches, so no padded partial patch is paid for on the long edge;
# "standard" is the standard tier (up to 1568 px), "high" the model's own tier (up to 2576 px on 4.7+ models).
DETAIL_LONG_EDGE = {"low": 504}
MIN_SHORT_SIDE = 200


def max_long_edge_for(preset: Preset) -> int | None:
    """--max-edge wins over the detail level; a long, thin image keeps a 200-px short side (pricing/sizing.py)."""
    return preset.max_edge if preset.max_edge is not None else DETAIL_LONG_EDGE.get(preset.detail)


def tier_for(preset: Preset, model: ModelInfo) -> VisionTier:
    # "standard" detail never needs more than the standard tier's pixels, even on high-res models.
    return model.tier if preset.detail == "high" else STANDARD


def instruction_tokens(preset: Preset, model: ModelInfo) -> int:
    return int(estimate_text_tokens(preset.instruction) * model.tokenizer_factor) + REQUEST_OVERHEAD_TOKENS


def prompt_tokens(preset: Preset, model: ModelInfo) -> int:
    """Text tokens of one request, uncached: schema + system [+ guide] + instruction."""
    return plan_prefix(preset, model).tokens + instruction_tokens(preset, model)


def image_tokens(width: int, height: int, preset: Preset, model: ModelInfo,
                 min_short: int = MIN_SHORT_SIDE) -> int | None:
    """None when the model's image-token rule is unknown (a local server's model): say so, never invent."""
    edge = min((e for e in (max_long_edge_for(preset), model.max_edge) if e), default=None)
    out_w, out_h = fit_size(width, height, tier_for(preset, model), edge, min_short)
    if model.image_tokens != "claude":
        from imgtag.pricing.image_rules import other_image_tokens

        return other_image_tokens(out_w, out_h, model)
    return visual_tokens(out_w, out_h)


def reserve_tokens(claude_tokens: int, width: int | None, height: int | None, model: ModelInfo) -> int:
    """Image tokens a request reserves for an image sent at width x height: the model's own rule, or an upper bound
    where its rule is unknown (pricing/image_rules.py). ``claude_tokens``: preprocessing's 28-px count."""
    if model.image_tokens == "claude" or not width or not height:
        return claude_tokens
    from imgtag.pricing.image_rules import reservation_image_tokens

    return reservation_image_tokens(width, height, claude_tokens, model)


def output_tokens(preset: Preset, model: ModelInfo) -> int:
    return int(preset.expected_output_tokens * model.tokenizer_factor)


@dataclass(frozen=True)
class RequestEstimate:
    """One request, uncached (what the pacer and the budget reserve: never less than it can cost)."""

    input_tokens: int
    output_tokens: int

    def usage(self) -> Usage:
        return Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens)


def estimate_request(image_visual_tokens: int, preset: Preset, model: ModelInfo) -> RequestEstimate:
    return RequestEstimate(input_tokens=image_visual_tokens + prompt_tokens(preset, model),
                           output_tokens=output_tokens(preset, model))


@dataclass(frozen=True)
class ModeCost:
    """A whole run in one mode: billed token classes and dollars."""

    input_tokens: int  # uncached input
    cache_write_tokens: int
    cache_read_tokens: int
    output_tokens: int
    usd: float | None
    ttl: str | None  # TTL of the cached prefix, None when nothing is cached

    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.cache_write_tokens, self.cache_read_tokens,
                     self.cache_write_tokens if self.ttl == "1h" else 0)


def pack_overhead(preset: Preset, model: ModelInfo) -> tuple[int, int]:
    """Tokens a labelled image adds in a pack: its label before the image, and the label in its answer."""
    label_in = int(estimate_text_tokens(f"{label_for(0)}:") * model.tokenizer_factor) + REQUEST_OVERHEAD_TOKENS
    label_out = int(estimate_text_tokens(f'"{LABEL_FIELD}": "{label_for(9)}", ') * model.tokenizer_factor)
    return label_in, label_out


def answers_wrapper_tokens(model: ModelInfo) -> int:
    """The packed answer's envelope around its per-image answers."""
    return int(estimate_text_tokens('{"answers": []}') * model.tokenizer_factor)


def pack_estimate(estimates: list[RequestEstimate], preset: Preset, model: ModelInfo) -> RequestEstimate:
    """One packed request for images each estimated alone (`estimate_request`): the prompt once, the packed
    preset's; each image after its label and each answer with its label; the answers' envelope. Summing the
    single estimates instead would reserve the prompt once per image."""
    alone = prompt_tokens(preset, model)
    label_in, label_out = pack_overhead(preset, model)
    k = len(estimates)
    images = sum(e.input_tokens - alone for e in estimates)
    return RequestEstimate(input_tokens=images + prompt_tokens(packed_preset(preset), model) + k * label_in,
                           output_tokens=sum(e.output_tokens for e in estimates) + k * label_out
                           + answers_wrapper_tokens(model))


@dataclass(frozen=True)
class RunText:
    """The text side of a run's requests: the prefix plan, how many requests, and what each carries."""

    plan: PrefixPlan
    requests: int
    instruction: int  # tokens per request
    labels_in: int  # label tokens over the run (packs: "Image 1:" before each image)
    labels_out: int  # the labels and the answers' wrapper in the output (packs)


def run_text(images: int, preset: Preset, model: ModelInfo, *, batch: bool, per_request: int = 1) -> RunText:
    """`images` asked `per_request` to a request (--images-per-request): packs are asked with the packed preset."""
    k = max(1, per_request)
    asked = packed_preset(preset) if k > 1 else preset
    plan = plan_prefix(asked, model, batch=batch)
    # Packs are full but for the last one, in sync mode too: there the first pack is the cache warm-up
    # (request/warmup.py), and a pack leaves short only when the input stalls (request/gather.py).
    requests = -(-images // k)
    labels_in = labels_out = 0
    if k > 1:
        label_in, label_out = pack_overhead(preset, model)
        labels_in = images * label_in
        labels_out = images * label_out + requests * answers_wrapper_tokens(model)
    return RunText(plan, requests, instruction_tokens(asked, model), labels_in, labels_out)


def bands_for(preset: Preset, model: ModelInfo, per_request: int = 1) -> Bands:
    """Empty bands for a run of this target (pricing/bands.py): what each request carries besides its images."""
    k = max(1, per_request)
    asked = packed_preset(preset) if k > 1 else preset
    label = pack_overhead(preset, model)[0] if k > 1 else 0
    return Bands(model.prices, k, plan_prefix(asked, model).tokens + instruction_tokens(asked, model), label)


def mode_cost(bands: Bands, preset: Preset, model: ModelInfo, *, batch: bool) -> ModeCost:
    """A run in one mode, its requests priced band by band (each request by its own prompt, pricing/bands.py).
    The cached prefix is written by the run's first request and read by every other."""
    k = bands.per_request
    asked = packed_preset(preset) if k > 1 else preset
    plan = plan_prefix(asked, model, batch=batch)
    instruction = instruction_tokens(asked, model)
    label_in, label_out = pack_overhead(preset, model) if k > 1 else (0, 0)
    wrapper = answers_wrapper_tokens(model) if k > 1 else 0
    total = Usage()
    usd: float | None = None if model.prices is None else 0.0
    for band, long in ((bands.standard, False), (bands.long, True)):
        if not band.requests:
            continue
        out = band.images * (output_tokens(preset, model) + label_out) + band.requests * wrapper
        uncached = band.image_tokens + band.images * label_in + band.requests * instruction
        write = read = 0
        if plan.cache:
            write = plan.tokens if bands.first_long == long else 0
            read = plan.tokens * band.requests - write
        else:
            uncached += band.requests * plan.tokens
        usage = Usage(uncached, out, write, read, write if plan.ttl == "1h" else 0)
        total = total + usage
        if model.prices is not None and usd is not None:
            usd += priced(model.prices, usage, long=long, batch=batch)
    requests = bands.standard.requests + bands.long.requests
    return ModeCost(total.input_tokens, total.cache_creation_input_tokens, total.cache_read_input_tokens,
                    total.output_tokens, None if usd is None else round(usd, 10),
                    plan.ttl if plan.cache and requests else None)


@dataclass
class ModelEstimate:
    model: str
    images: int = 0
    image_tokens: int = 0
    input_tokens: int = 0  # every input token of the run as if nothing were cached (the old figure)
    output_tokens: int = 0
    standard_usd: float | None = 0.0  # sync, caching included
    batch_usd: float | None = 0.0  # batch, caching included
    sync: ModeCost | None = None
    batch: ModeCost | None = None
    per_image: dict[str, float] = field(default_factory=dict)  # where an image's tokens go
    prefix: PrefixPlan | None = None
    tokens_known: bool = True  # False: the model's image tokens are unknown; input_tokens counts text only
    caching_known: bool = True  # False: imgtag knows nothing of the model's caching (ModelInfo.caching_known)


@dataclass
class Estimator:
    """Accumulates distinct images (width/height after orientation); `totals` prices them per model."""

    preset: Preset
    models: list[str] = field(default_factory=lambda: list(catalogue().models))
    min_short: int = MIN_SHORT_SIDE
    per_request: int = 1  # --images-per-request
    # Images per request in sync mode, when it differs: a provider that packs only in batch mode (OpenAI's Batch
    # API) sends one image per request in a sync run, so the sync figure must not be a packed one.
    sync_per_request: int | None = None
    # Models resolved by the caller (the run's target: its imgtag.toml or --price-in prices), by id; the rest
    # come from the catalogue.
    infos: dict[str, ModelInfo] = field(default_factory=dict)
    _images: int = field(init=False, default=0)
    _image_tokens: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self._infos = {m: self.infos.get(m) or catalogue().get(m) for m in self.models}
        self._image_tokens = {m: 0 for m in self.models}
        self._known = {m: True for m in self.models}
        self._bands = {m: bands_for(self.preset, info, self.per_request) for m, info in self._infos.items()}
        sync_k = self.per_request if self.sync_per_request is None else self.sync_per_request
        self._sync_bands = ({m: bands_for(self.preset, info, sync_k) for m, info in self._infos.items()}
                            if max(1, sync_k) != max(1, self.per_request) else self._bands)

    def add(self, width: int, height: int, times: int = 1) -> None:
        """One more distinct image (or `times` of this size), in the order the run would ask it (packs are formed
        in that order)."""
        self._images += times
        for model_id, info in self._infos.items():
            img = image_tokens(width, height, self.preset, info, self.min_short)
            if img is None:
                self._known[model_id] = False
            self._image_tokens[model_id] += (img or 0) * times
            self._bands[model_id].add(img or 0, times)
            if self._sync_bands is not self._bands:
                self._sync_bands[model_id].add(img or 0, times)

    def estimate(self, model_id: str) -> ModelEstimate:
        info = self._infos[model_id]
        n, img = self._images, self._image_tokens[model_id]
        bands = self._bands[model_id].closed()
        sync = mode_cost(self._sync_bands[model_id].closed() if self._sync_bands is not self._bands else bands,
                         self.preset, info, batch=False)
        batch = mode_cost(bands, self.preset, info, batch=True)
        k = max(1, self.per_request)
        # Full packs (as batch mode sends them) for the uncached count; the plan's parts do not depend on the mode.
        text = run_text(n, self.preset, info, batch=True, per_request=k)
        plan = plan_prefix(packed_preset(self.preset) if k > 1 else self.preset, info)
        known = self._known[model_id]
        # Unknown image tokens leave the cost unknown too, unless the model is free (a local server).
        priced = known or (info.prices is not None and info.prices.input == 0)
        if not priced:
            sync, batch = dataclasses.replace(sync, usd=None), dataclasses.replace(batch, usd=None)
        return ModelEstimate(
            model=model_id, images=n, image_tokens=img,
            input_tokens=img + text.labels_in + text.requests * (plan.tokens + text.instruction),
            output_tokens=sync.output_tokens, standard_usd=sync.usd, batch_usd=batch.usd, sync=sync, batch=batch,
            per_image={  # a request's text is shared by its k images
                "image": img / n if n else 0.0,
                "prompt": (plan.system_tokens + plan.guide_tokens + text.instruction) / k
                + (text.labels_in / n if n else 0.0),
                "schema": plan.schema_tokens / k,
                "output": sync.output_tokens / n if n else float(output_tokens(self.preset, info)),
            },
            prefix=plan, tokens_known=known, caching_known=info.caching_known,
        )

    @property
    def totals(self) -> dict[str, ModelEstimate]:
        return {m: self.estimate(m) for m in self.models}


__all__ = ["HIGH_RES", "STANDARD", "Estimator", "ModeCost", "ModelEstimate", "RequestEstimate", "estimate_request",
           "mode_cost"]
