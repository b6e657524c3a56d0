"""A streamed Messages answer read from its raw server-sent events.

The SDK makes the request (`messages.create(stream=True)`: auth, headers, timeouts, HTTP errors); we read the
response's bytes and parse its events with `json` here. The SDK's own reader turns every event into typed pydantic
objects and rebuilds a message snapshot after each: for a short answer that was most of the main process's
CPU per image (issue 20 item 2, docs/benchmarks.md "First run"). Nothing here imports the SDK.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from imgtag.pricing.costs import Usage
from imgtag.providers.base import ModelAnswer


def sse_events(body: bytes) -> Iterator[tuple[str | None, str]]:
    """(event name, data) of each complete event in `body` (the whole response; SSE's line rules)."""
    text = body.decode("utf-8", errors="replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    for block in text.split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        if name is not None or data:
            yield name, "\n".join(data)


class StreamError(Exception):
    """An `error` event inside a 200 stream: `body` is its JSON (the same shape as an HTTP error's body)."""

    def __init__(self, message: str, body: object) -> None:
        super().__init__(message)
        self.body = body


@dataclass
class MessageAccumulator:
    """The message the events build, as plain data: content blocks, usage, stop reason."""

    message: dict[str, Any] | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    json_parts: dict[int, list[str]] = field(default_factory=dict)
    stopped: bool = False  # message_delta seen: the stop reason and the final usage are known

    def feed(self, name: str | None, data: str) -> None:
        if name == "ping" or not data:
            return
        if name == "error":
            try:
                body: object = json.loads(data)
            except ValueError:
                body = data
            raise StreamError(f"{body}", body)
        event = json.loads(data)
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start":
            self.message = dict(event.get("message") or {})
            self.message["usage"] = dict(self.message.get("usage") or {})
        elif self.message is None:
            return  # nothing before message_start means anything (the SDK refuses such a stream)
        elif kind == "content_block_start":
            self.blocks.append(dict(event.get("content_block") or {}))
        elif kind == "content_block_delta":
            self._delta(int(event.get("index", 0)), event.get("delta") or {})
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            self.message["stop_reason"] = delta.get("stop_reason")
            self.message["stop_details"] = delta.get("stop_details")
            # Usage on message_delta is cumulative: it overwrites, and a count it omits keeps its start value.
            usage = self.message["usage"]
            for name_, value in (event.get("usage") or {}).items():
                if value is not None:
                    usage[name_] = value
            self.stopped = True

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        if not 0 <= index < len(self.blocks):
            return
        block = self.blocks[index]
        kind = delta.get("type")
        if kind == "text_delta" and block.get("type") == "text":
            block["text"] = block.get("text", "") + delta.get("text", "")
        elif kind == "input_json_delta":
            self.json_parts.setdefault(index, []).append(delta.get("partial_json", ""))

    def answer(self) -> ModelAnswer | None:
        """The answer, or None when the stream ended before the message did (cut off)."""
        if self.message is None or not self.stopped:
            return None
        texts: list[str] = []
        obj: dict[str, Any] | None = None
        for index, block in enumerate(self.blocks):
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "tool_use" and obj is None:
                raw = "".join(self.json_parts.get(index, []))
                value = json.loads(raw) if raw else block.get("input")
                if isinstance(value, dict):
                    obj = dict(value)
        u = self.message["usage"]
        creation = u.get("cache_creation") or {}
        usage = Usage(
            input_tokens=u.get("input_tokens") or 0,
            output_tokens=u.get("output_tokens") or 0,
            cache_creation_input_tokens=u.get("cache_creation_input_tokens") or 0,
            cache_read_input_tokens=u.get("cache_read_input_tokens") or 0,
            cache_creation_1h_input_tokens=(creation.get("ephemeral_1h_input_tokens") or 0
                                            if isinstance(creation, dict) else 0),
        )
        stop = self.message.get("stop_reason")
        refusal = None
        if stop == "refusal":
            details = self.message.get("stop_details") or {}
            if isinstance(details, dict):
                refusal = "; ".join(str(x) for x in (details.get("category"), details.get("explanation"))
                                    if x) or None
        return ModelAnswer(stop_reason=stop or "unknown", usage=usage, text="".join(texts) if texts else None,
                           obj=obj, refusal=refusal)
