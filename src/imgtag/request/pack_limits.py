"""The `--images-per-request K` limits, checked by the CLI before anything else loads.

Kept apart from packing.py, which imports presets and providers: a bad flag (or any other configuration
error) must be reported in a fraction of a second (issue 9 item 15, bench/startup.py).
"""

from __future__ import annotations

from imgtag.config.options import option

MAX_IMAGES_PER_REQUEST = 20  # above 20 images per request the API's stricter per-image size limit applies


def check_images_per_request(value: int) -> str | None:
    """One sentence for a bad --images-per-request (sync and batch mode alike), or None."""
    if not 1 <= value <= MAX_IMAGES_PER_REQUEST:
        return f"{option('images_per_request')} must be between 1 and {MAX_IMAGES_PER_REQUEST}, not {value}"
    return None
