"""A preset as asked when several labelled images share one request (`--images-per-request K`).

The provider is asked with `packed_preset(preset)`: the system prompt says how images are labelled, the answer
schema is an array of the preset's answers, each keyed by the image's label. Results are still stored under
the preset itself. Shared by the request stage (sync packing, batch packs) and pricing (estimates).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from imgtag.presets.model import Preset

LABEL_FIELD = "label"
PACK_NOTE = (
    "\n\nSeveral images can come in one message, each right after its label on a line of its own (\"Image 1:\", "
    "\"Image 2:\", ...). Answer with one JSON object {\"answers\": [...]} holding one item per image: its label "
    "copied exactly (for example \"Image 2\") and the fields for that image alone, never mixing images."
)


def label_for(index: int) -> str:
    return f"Image {index + 1}"


def packed_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An array of the preset's answers, each with the image's label first. The same for any pack size, so the
    cached prefix is the same for a full pack, the last short one and the first one."""
    item = json.loads(json.dumps(schema))
    item["properties"] = {LABEL_FIELD: {"type": "string", "description": "The image's label, e.g. \"Image 1\"."},
                          **item.get("properties", {})}
    item["required"] = [LABEL_FIELD, *[r for r in item.get("required", []) if r != LABEL_FIELD]]
    return {"type": "object", "additionalProperties": False, "required": ["answers"],
            "properties": {"answers": {"type": "array", "items": item,
                                       "description": "One answer per image, keyed by its label."}}}


def packed_preset(preset: Preset) -> Preset:
    """What the provider is asked with (never what results are stored under: that stays `preset`)."""
    return dataclasses.replace(
        preset, system=preset.system + PACK_NOTE, schema=packed_schema(preset.schema),
        compact_system=preset.compact_system + PACK_NOTE if preset.compact_system else "",
        instruction=f"{preset.instruction} Answer for every labelled image above.",
        version=f"{preset.version}-packed")
