"""`--images-per-request K`: several labelled images in one request, so the shared prefix is paid once per K.

The sync engine still works image by image: each of its requests reaches `Packer.describe`, which holds it for
a moment until K are waiting (or `linger_s` passes), sends them as one request ("Image 1:", image, "Image 2:",
image, ..., the instruction) with a schema that is the same for every pack (an array of answers, each keyed by
the image's label), and hands each waiting request its own answer back. The engine then validates, stores and
retries each image exactly as it does for single requests.

Batch mode (request/batch/runner.py) builds the same packed request with `packed_params` and splits the result
with `split_answer`; the store keeps one batch item per image.

What a failure touches: only the K images of that request. A truncated or unusable answer, or a missing or
duplicated label, makes only those images' answers invalid (the engine asks again, possibly packed with others);
a request the API refuses as invalid (one bad image makes a 400) is re-sent one image per request, so the bad
image fails alone. The usage of a pack is split evenly across its images, so costs still add up.

Trade-off (README): fewer prefix tokens per image, but one answer for several images is longer, a failure is
retried for K images, the pacer counts K requests for one, and a model may confuse images in a pack; the fake
server cannot judge the last point, so packing is off by default.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from imgtag.presets.packed import LABEL_FIELD, label_for, packed_preset
from imgtag.pricing.costs import Usage
from imgtag.providers.base import (
    ImageInput,
    ModelAnswer,
    Permanent,
    Provider,
    ProviderError,
    RateLimitSnapshot,
    RequestOptions,
)


def labelled_content(images: list[ImageInput], params: dict[str, Any], instruction: str) -> list[dict[str, Any]]:
    """The user turn: each image after its label, then the instruction; image blocks as the provider built one."""
    template = next(b for b in params["messages"][0]["content"] if b.get("type") == "image")
    import base64

    content: list[dict[str, Any]] = []
    for i, image in enumerate(images):
        block = json.loads(json.dumps(template))
        block["source"] = {"type": "base64", "media_type": image.media_type,
                           "data": base64.b64encode(image.data).decode("ascii")}
        content += [{"type": "text", "text": f"{label_for(i)}:"}, block]
    content.append({"type": "text", "text": instruction})
    return content


def packed_params(build_params: Callable[[ImageInput, RequestOptions], dict[str, Any]], images: list[ImageInput],
                  options: list[RequestOptions]) -> dict[str, Any]:
    """One request carrying several labelled images (sync packs and batch packs alike): the first image's request
    as the provider builds it, asked with the packed preset, with room for every answer, and the labelled images
    as its user turn."""
    first = options[0]
    packed = dataclasses.replace(first, preset=packed_preset(first.preset),
                                 max_tokens=sum(o.max_tokens for o in options))
    params = build_params(images[0], packed)
    params["messages"][0]["content"] = labelled_content(images, params, packed.preset.instruction)
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
                               request_id=answer.request_id, refusal=answer.refusal, limits=answer.limits))
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


class Packer(Provider):
    """Wraps a provider that can send prepared params (`build_params` + `send_params`) for the sync engine."""

    def __init__(self, inner: Any, per_request: int, linger_s: float = 0.05) -> None:
        self.inner = inner
        self.name = inner.name
        self.per_request = per_request
        self.linger_s = linger_s
        self._waiting: list[tuple[ImageInput, RequestOptions, asyncio.Future[ModelAnswer]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self.requests = 0

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        future: asyncio.Future[ModelAnswer] = asyncio.get_running_loop().create_future()
        self._waiting.append((image, options, future))
        if len(self._waiting) >= self.per_request:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            pack, self._waiting = self._waiting[: self.per_request], self._waiting[self.per_request:]
            self._spawn(self._send(pack))

    async def _send(self, pack: list[tuple[ImageInput, RequestOptions, asyncio.Future[ModelAnswer]]]) -> None:
        try:
            self.requests += 1
            params = packed_params(self.inner.build_params, [p[0] for p in pack], [p[1] for p in pack])
            began = [opts.began for _, opts, _ in pack if opts.began is not None]
            answer = await self.inner.send_params(params, began=_all(began) if began else None)
        except Permanent as exc:
            if len(pack) > 1:
                # One bad image makes the whole request invalid: ask one image per request, so it fails alone.
                for image, opts, future in pack:
                    self._spawn(self._send([(image, opts, future)]))
                return
            _settle_error(pack, exc)
            return
        except ProviderError as exc:
            _settle_error(pack, exc)
            return
        except Exception as exc:  # never leave an engine task waiting forever
            _settle_error(pack, exc)
            return
        for (_, _, future), own in zip(pack, split_answer(answer, len(pack)), strict=True):
            if not future.done():
                future.set_result(own)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # a reference until it is done, or the loop may drop it
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _all(callbacks: list[Callable[[RateLimitSnapshot], None]]) -> Callable[[RateLimitSnapshot], None]:
    def call(limits: RateLimitSnapshot) -> None:
        for callback in callbacks:
            callback(limits)
    return call


def _settle_error(pack: list[tuple[ImageInput, RequestOptions, asyncio.Future[ModelAnswer]]],
                  exc: BaseException) -> None:
    for _, _, future in pack:
        if not future.done():
            future.set_exception(exc)


def pack_images(provider: Provider, per_request: int) -> Provider:
    """The provider itself for K = 1; a Packer for providers that can send prepared params."""
    if per_request <= 1 or not hasattr(provider, "send_params"):
        return provider
    return Packer(provider, per_request)
