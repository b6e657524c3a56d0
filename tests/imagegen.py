"""Small synthetic images and CLI helpers for engine tests: each a distinct solid colour, so the fake server's answer
(which names the mean colour of the image it received) proves which image a result describes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from imgtag.cli.commands import app

LEVELS = (10, 50, 90, 130, 170, 210, 250)


def colours(n: int) -> list[tuple[int, int, int]]:
    out = [(r, g, b) for r in LEVELS for g in LEVELS for b in LEVELS]
    assert n <= len(out), "not enough distinct colours"
    return out[:n]


def make_images(folder: Path, n: int, size: tuple[int, int] = (240, 220)) -> dict[str, tuple[int, int, int]]:
    """Write n JPEGs; returns file name -> colour."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, tuple[int, int, int]] = {}
    for i, colour in enumerate(colours(n)):
        name = f"img_{i:04d}.jpg"
        Image.new("RGB", size, colour).save(folder / name, quality=95)
        made[name] = colour
    return made


def hex_colour(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def close_to(hex_text: str, colour: tuple[int, int, int], tolerance: int = 6) -> bool:
    """JPEG round trips shift a solid colour by a few levels; distinct test colours are 40 apart."""
    value = hex_text.strip().lstrip("#")[:6]
    rgb = tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, colour, strict=True))


def server_error_for(failing: list[tuple[int, int, int]]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """A fake server's `respond`: a 500 for the images whose colour is in `failing` (the key is the mean colour the
    server sees), the normal answer for the rest. Read at each request: clear the list and they are answered."""

    def respond(ctx: dict[str, Any]) -> dict[str, Any] | None:
        return {"status": 500} if any(close_to(ctx["image_key"] or "", c) for c in failing) else None

    return respond


def run_cli(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Invoke the real CLI in-process with exactly these ANTHROPIC_* variables set."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    return result.exit_code, result.output


def one_sentence(output: str) -> str:
    """The one line a usage error prints (and never a traceback)."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
