"""`imgtag providers`: what is installed, from which package, and what each provider supports."""

from __future__ import annotations

import json
from typing import Any

from imgtag.providers import describe_installed


def _summary(caps: dict[str, Any]) -> str:
    parts = ["native schema" if caps["native_schema"] else "prompted JSON",
             "batch" if caps["batch"] else "no batch",
             "images " + ", ".join(t.removeprefix("image/") for t in caps["image_formats"])]
    if caps["max_image_edge"]:
        parts.append(f"max edge {caps['max_image_edge']} px")
    parts.append(f"{caps['max_images_per_request']} image(s)/request")
    return "; ".join(parts)


def print_providers(console: Any, *, as_json: bool = False) -> None:
    rows = describe_installed()
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    # Columns as wide as their longest entry, so what each supports has room on a narrow terminal.
    name_width = max((len(row["name"]) for row in rows), default=0) + 2
    package_width = max((len(row["package"]) for row in rows), default=0) + 2
    for row in rows:
        what = f"error: {row['error']}" if "error" in row else _summary(row["capabilities"])
        console.print(f"{row['name']:<{name_width}}{row['package']:<{package_width}}{what}",
                      indent=" " * (name_width + package_width))
