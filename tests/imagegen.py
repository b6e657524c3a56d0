"""Small synthetic images for engine tests: each a distinct solid colour, so the fake server's answer
(which names the mean colour of the image it received) proves which image a result describes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

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
