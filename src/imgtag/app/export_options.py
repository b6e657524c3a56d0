"""Export options checked before anything is spent or written: one sentence (UsageError) for a bad one."""

from __future__ import annotations

from typing import Any

from imgtag.config.errors import UsageError
from imgtag.config.options import option


def export_options(txt_template: str | None, txt_existing: str | None, metadata_overwrite: bool) -> dict[str, Any]:
    from imgtag.export.beside import EXISTING_POLICIES

    if txt_existing is not None and txt_existing not in EXISTING_POLICIES:
        raise UsageError(f"{option('txt_existing')} must be one of {', '.join(EXISTING_POLICIES)}, "
                         f"not {txt_existing!r}")
    return {"txt_template": txt_template, "txt_existing": txt_existing,
            "metadata_overwrite": metadata_overwrite or None}


def xlsx_options(formats: str, thumbnails: bool | None) -> dict[str, Any]:
    """--xlsx-thumbnails: only with a workbook to put them in."""
    from imgtag.export import parse_formats

    if thumbnails and "xlsx" not in parse_formats(formats):
        raise UsageError(f"{option('xlsx_thumbnails')} puts thumbnails in results.xlsx, but "
                         f"{option('formats', formats)} writes no xlsx; add xlsx to {option('formats')}")
    return {} if thumbnails is None else {"xlsx_thumbnails": thumbnails}


def xmp_options(formats: str, xmp_name: str | None, xmp_touch: bool, overwrite_text: bool) -> dict[str, Any]:
    """Check the formats (unknown names, xmp-embed without exiftool) and the XMP options."""
    from imgtag.export import parse_formats

    try:
        parse_formats(formats)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options: dict[str, Any] = {}
    if xmp_name is not None:
        if xmp_name not in ("full", "stem"):
            raise UsageError(f"{option('xmp_name')} must be full or stem, not {xmp_name!r}")
        options["xmp_name"] = xmp_name
    if xmp_touch:
        options["xmp_touch"] = True
    if overwrite_text:
        options["xmp_overwrite_text"] = True
    return options


def check_export_options(formats: str, options: dict[str, Any], fields: list[str],
                         preset_template: str | None) -> None:
    """Refuse a caption template naming no field of this preset before anything is spent or written."""
    from imgtag.export import parse_formats

    try:
        if "txt" in parse_formats(formats):
            template = options.get("txt_template") or preset_template
            if template:
                from imgtag.export.captions import check_template  # the txt writer's module: only for txt

                check_template(template, fields)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
