"""`--images-per-request K`: several labelled images in one request, so the shared prefix is paid once per K.

A pack is built as one request ("Image 1:", image, "Image 2:", image, ..., the instruction) with a schema that
is the same for every pack (an array of answers, each keyed by the image's label), and its answer is split so
each image gets its own item back (`split_answer`), with an even share of the usage, so costs still add up (each
share priced at the band the whole request's prompt falls in).

Sync mode: the engine (request/engine.py) gathers K work items (request/gather.py), takes one pacer permit for
them and hands them to the provider as an `ImagePack`, which passes through wrappers such as the cache
warm-up like any one request and is sent by `PackSender`; it then validates, stores and retries each image
on its own. Batch mode (request/batch/runner.py) builds the same packed request with `packed_params` and splits
the result with `split_answer`; the store keeps one batch item per image.

What a failure touches: only the images of that request. A truncated or unusable answer, or a missing or
duplicated label, makes only those images' answers invalid (the engine asks again for them); a request the API
refuses as invalid (one bad image makes a 400) is re-sent one image per request, so the bad image fails alone.

Trade-off (README): fewer prefix tokens per image, but one answer for several images is longer, a failure is
retried for K images, and a model may confuse images in a pack; the fake server cannot judge the last point,
so packing is off by default.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imgtag.presets.packed import LABEL_FIELD, label_for, packed_preset
from imgtag.pricing.costs import Usage, prompt_tokens
from imgtag.providers.base import ImageInput, ModelAnswer, Provider, RequestOptions


def labelled_content(images: list[ImageInput], params: dict[str, Any], instruction: str) -> list[dict[str, Any]]:
    """The user turn: each image after its label, then the instruction; image blocks as the provider built one
    (a Messages `image` block with a base64 source, or a Chat Completions `image_url` block with a data URL)."""
    import base64

    template = next(b for b in _user_turn(params)["content"] if b.get("type") in ("image", "image_url"))
    content: list[dict[str, Any]] = []
    for i, image in enumerate(images):
        block = json.loads(json.dumps(template))
        data = base64.b64encode(image.data).decode("ascii")
        if block["type"] == "image_url":
            block["image_url"]["url"] = f"data:{image.media_type};base64,{data}"
        else:
            block["source"] = {"type": "base64", "media_type": image.media_type, "data": data}
        content += [{"type": "text", "text": f"{label_for(i)}:"}, block]
    content.append({"type": "text", "text": instruction})
    return content


def _user_turn(params: dict[str, Any]) -> dict[str, Any]:
    """The message holding the image (Chat Completions puts the system prompt in a message before it)."""
    return next(m for m in params["messages"] if m.get("role") == "user" and isinstance(m.get("content"), list))


def packed_params(build_params: Callable[[ImageInput, RequestOptions], dict[str, Any]], images: list[ImageInput],
                  options: list[RequestOptions]) -> dict[str, Any]:
    """One request carrying several labelled images (sync packs and batch packs alike): the first image's request
    as the provider builds it, asked with the packed preset, with room for every answer, and the labelled images
    as its user turn."""
    first = options[0]
    packed = dataclasses.replace(first, preset=packed_preset(first.preset),
                                 max_tokens=sum(o.max_tokens for o in options))
    params = build_params(images[0], packed)
    _user_turn(params)["content"] = labelled_content(images, params, packed.preset.instruction)
    return params


def split_answer(answer: ModelAnswer, count: int) -> list[ModelAnswer]:
    """One ModelAnswer per image: its own item (as a tool-style object), the pack's stop reason, a share of the
    usage. Missing, duplicated or malformed items become an answer with no output (judged invalid)."""
    items: dict[str, dict[str, Any] | None] = {}
    data: Any = answer.obj
    if data is None and answer.text:
        try:
            data = json.loads(answer.text)
        except ValueError:
            data = None
    answers = data.get("answers") if isinstance(data, dict) else None
    for item in answers if isinstance(answers, list) else []:
        if isinstance(item, dict) and isinstance(item.get(LABEL_FIELD), str):
            label = item[LABEL_FIELD].strip().rstrip(":")
            items[label] = None if label in items else {k: v for k, v in item.items() if k != LABEL_FIELD}
    shares = _split_usage(answer.usage, count)
    out = []
    for i in range(count):
        own = items.get(label_for(i))
        # A truncated or refused pack stays that for every image; otherwise each is judged on its own item.
        text = None if own is None else json.dumps(own, ensure_ascii=False)
        out.append(ModelAnswer(stop_reason=answer.stop_reason, usage=shares[i], text=text,
                               request_id=answer.request_id, refusal=answer.refusal, limits=answer.limits,
                               request_prompt_tokens=prompt_tokens(answer.usage)))
    return out


def _split_usage(usage: Usage, count: int) -> list[Usage]:
    fields = [f.name for f in dataclasses.fields(Usage)]
    totals = [getattr(usage, f) for f in fields]
    shares = []
    for i in range(count):
        # Even shares, the remainder on the first images, so the shares add up to the pack exactly.
        shares.append(Usage(**{f: t // count + (1 if i < t % count else 0)
                               for f, t in zip(fields, totals, strict=True)}))
    return shares


@dataclass(frozen=True)
class ImagePack(ImageInput):
    """Several images asked in one request. An ImageInput, so provider wrappers that pass an image through
    untouched (the cache warm-up) carry a pack as the one request it is; `PackSender` sends it."""

    images: tuple[ImageInput, ...] = ()

    @classmethod
    def of(cls, images: list[ImageInput]) -> ImagePack:
        return cls(b"", "", tuple(images))


class PackSender(Provider):
    """Wraps a provider that can send prepared params (`build_params` + `send_params`): an ImagePack goes as one
    labelled request asked with the packed preset (its answer is the whole pack's: `split_answer` it), any
    other image as the provider sends it. `options.max_tokens` is the pack's total."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        if isinstance(image, ImagePack):
            return await self.inner.send_params(packed_params(self.inner.build_params, list(image.images), [options]),
                                                began=options.began)
        return await self.inner.describe(image, options)

    async def ready(self) -> None:
        await self.inner.ready()

    async def aclose(self) -> None:
        await self.inner.aclose()


def pack_size(provider: Provider | type[Provider], per_request: int) -> int:
    """Images per sync request: K where the provider (or its class) can send packs (prepared params), else 1."""
    return per_request if per_request > 1 and hasattr(provider, "send_params") else 1


def pack_images(provider: Provider, per_request: int) -> Provider:
    """The provider itself for K = 1; a PackSender for providers that can send prepared params."""
    return PackSender(provider) if pack_size(provider, per_request) > 1 else provider
