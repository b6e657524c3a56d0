"""The run's machine-readable events (docs/events.md): what scripts and `imgtag.tag(on_event=...)` receive.

An event is a plain mapping with `"v": 1` and `"type"`; `schema.json` beside this module is the contract.
Only `emitter.py` is needed by a run; `jsonl.py` is the CLI's `--events FILE|-` handler.
"""

from imgtag.events.emitter import VERSION, EventHandler, Events

__all__ = ["VERSION", "EventHandler", "Events"]
