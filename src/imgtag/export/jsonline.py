"""One JSON value as text that stays on one line for every reader, and encodes as UTF-8.

``json.dumps(ensure_ascii=False)`` leaves two things raw that break JSON-lines files:
- U+2028/U+2029 (line and paragraph separators, which model text and OCR can hold): ``str.splitlines``,
  JavaScript before ES2019 and some JSONL readers end a line there, so one record would become two broken ones;
- lone surrogates (a non-UTF-8 file name decoded with surrogateescape, or ``\\ud800`` in model text), which cannot
  be encoded as UTF-8 at all.
Both are escaped as ``\\uXXXX``, which is valid JSON: every reader gets the same string back.
"""

from __future__ import annotations

import json
import re
from typing import Any

_UNSAFE = re.compile("[\u2028\u2029\ud800-\udfff]")


def one_line(text: str) -> str:
    """Escape U+2028, U+2029 and lone surrogates in JSON text (only ever inside strings, so still valid JSON)."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_line(obj: Any) -> str:
    """One JSON value on one line (no newline added), for JSON-lines output such as `scan --json`, `status --json`."""
    return one_line(json.dumps(obj, ensure_ascii=False))
