"""An imgtag provider in one file: answers every request from the image itself, without a network.

Each string it returns names the image's mean colour (#rrggbb), so a test can check every result
landed on its own image, and every string but the colour also the size it received (WxH). A real provider
would call its API in `describe` and classify errors.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageStat

from imgtag.pricing.costs import Usage
from imgtag.providers.base import Capabilities, ImageInput, ModelAnswer, Permanent, Provider, RequestOptions


class EchoProvider(Provider):
    name = "echo"
    capabilities = Capabilities(native_schema=True, batch=False, image_formats=("image/jpeg", "image/png"),
                                max_image_edge=512, max_images_per_request=1)
    default_model = "echo-1"

    def __init__(self, **settings: Any) -> None:
        self.settings = settings  # timeout, base_url... unused: there is no server

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        try:
            with Image.open(io.BytesIO(image.data)) as im:
                r, g, b = (round(c) for c in ImageStat.Stat(im.convert("RGB")).mean[:3])
                size = f"{im.width}x{im.height}"
        except OSError as exc:
            raise Permanent(f"echo cannot read this image: {exc}") from None
        key = f"#{r:02x}{g:02x}{b:02x}"
        obj = _instance(options.preset.schema, key, "value", size)
        return ModelAnswer(stop_reason="end_turn", usage=Usage(input_tokens=1, output_tokens=1), obj=obj)


def _instance(schema: dict[str, Any], key: str, name: str, size: str) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {prop: _instance(sub, key, prop, size) for prop, sub in schema.get("properties", {}).items()
                if prop in schema.get("required", [])}
    if kind == "array":
        return [_instance(schema.get("items", {}), key, name, size)]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    return key if name in ("color", "colour") else f"{key} {size} {name}"[: schema.get("maxLength", 40)]
