"""The image request a target asks for: what every image is resized and encoded to before it is sent.

Shared by the sync run, batch mode, `scan` and the Ray engine, so each prepares an image exactly alike.
"""

from __future__ import annotations

from imgtag.config.runconfig import RunConfig, Target
from imgtag.ingest.preprocess import PrepareRequest
from imgtag.pricing.estimate import max_long_edge_for, tier_for


def prepare_template(cfg: RunConfig, target: Target, *, encode: bool,
                     provider_max_edge: int | None = None) -> PrepareRequest:
    # The smallest of: the preset's detail level, the model's own limit (e.g. GLM-4v-9b sees 1120 px),
    # and the provider's (its capabilities.max_image_edge); a larger image would only be resized again on the server.
    edges = [max_long_edge_for(target.preset), target.model.max_edge, provider_max_edge]
    edge = min((e for e in edges if e), default=None)
    return PrepareRequest(path="", encode=encode, tier=tier_for(target.preset, target.model),
                          max_long_edge=edge, min_short_side=cfg.min_side,
                          max_pixels=int(cfg.max_megapixels * 1_000_000))
