"""Wire-level test doubles for the vendor APIs imgtag talks to."""

from .anthropic_server import FakeAnthropicServer, FakeConfig, FakeStats, image_key

__all__ = ["FakeAnthropicServer", "FakeConfig", "FakeStats", "image_key"]
