"""The streamed answer read from raw events (providers/anthropic_stream.py): the same answer the SDK's typed reader
made, for the event sequences the fake server sends (its `_stream_events`, modelled on the API's)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.fakes.anthropic_server import _stream_events

from imgtag.providers.anthropic_stream import MessageAccumulator, StreamError, sse_events


def wire(events: list[tuple[str, dict[str, Any]]], newline: str = "\n") -> bytes:
    text = "".join(f"event: {name}{newline}data: {json.dumps(data)}{newline}{newline}" for name, data in events)
    return text.encode()


def read(body: bytes) -> MessageAccumulator:
    acc = MessageAccumulator()
    for name, data in sse_events(body):
        acc.feed(name, data)
    return acc


def message(content: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": content,
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 1200, "output_tokens": 57, "cache_creation_input_tokens": 900,
                      "cache_read_input_tokens": 0,
                      "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 900}},
            **extra}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_text_answer_with_thinking_first_and_usage_from_both_ends(newline: str) -> None:
    text = '{"title": "A red square", "keywords": ["red", "square"]}'
    msg = message([{"type": "thinking", "thinking": "hm " * 30, "signature": "sig"}, {"type": "text", "text": text}])
    answer = read(wire(_stream_events(msg), newline)).answer()
    assert answer is not None
    assert answer.text == text and answer.obj is None
    assert answer.stop_reason == "end_turn"
    # output_tokens from message_delta (the start carries a placeholder), the 1-hour write from message_start
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (1200, 57)
    assert answer.usage.cache_creation_input_tokens == 900
    assert answer.usage.cache_creation_1h_input_tokens == 900


def test_tool_use_input_is_assembled_from_its_json_pieces() -> None:
    tool_input = {"caption": "x" * 100, "tags": ["a", "b"]}
    msg = message([{"type": "tool_use", "id": "toolu_1", "name": "describe", "input": tool_input}],
                  stop_reason="tool_use")
    answer = read(wire(_stream_events(msg))).answer()
    assert answer is not None and answer.obj == tool_input and answer.text is None


def test_refusal_keeps_its_category_and_explanation() -> None:
    msg = message([], stop_reason="refusal", stop_details={"type": "refusal", "category": "cyber",
                                                           "explanation": "not this"})
    answer = read(wire(_stream_events(msg))).answer()
    assert answer is not None and answer.stop_reason == "refusal" and answer.refusal == "cyber; not this"


def test_a_stream_that_ends_before_the_message_is_no_answer() -> None:
    events = _stream_events(message([{"type": "text", "text": "{}"}]))
    cut = [e for e in events if e[0] not in ("message_delta", "message_stop")]
    assert read(wire(cut)).answer() is None
    assert read(b"").answer() is None


def test_an_error_event_carries_its_body() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events = [*_stream_events(message([]))[:2], ("error", body)]
    with pytest.raises(StreamError) as caught:
        read(wire(events))
    assert caught.value.body == body
