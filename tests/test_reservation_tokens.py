"""What a request reserves (budget and pacer) counts the image with the rule of the model it goes to, never Claude's
28-px patches for a model that counts otherwise: an underestimate would let --budget be overrun."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from imagegen import make_images, run_cli
from imgtag.pricing.catalogue import catalogue
from imgtag.pricing.estimate import prompt_tokens
from imgtag.pricing.extra_models import extra_model
from imgtag.request.engine import Engine

SIZE = (240, 220)  # sent as is: smaller than every preset's and model's limit


def reserved_image_tokens(tmp_path: Path, fake: Any, model: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    original = Engine._request_estimate

    def spy(self: Engine, items: list[Any]) -> Any:
        estimate = original(self, items)
        seen.append(estimate.input_tokens - prompt_tokens(self.settings.preset, self.settings.model))
        return estimate

    monkeypatch.setattr(Engine, "_request_estimate", spy)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    make_images(tmp_path / "in", 2, size=SIZE)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q", "--provider",
                            "openai", "--base-url", fake.base_url, "--model", model], {}, monkeypatch)
    assert code == 0, output
    return seen


def test_gpt_4o_class_reserves_by_openai_tiles_not_claude_patches(tmp_path, fake_openai_factory, monkeypatch):
    seen = reserved_image_tokens(tmp_path, fake_openai_factory(models=("gpt-4o-mini",)), "gpt-4o-mini", monkeypatch)
    # OpenAI's tile rule as the catalogue records it for gpt-4o-mini: 2833 + 5667 per 512-px tile, one tile here.
    # Claude's rule would have reserved ceil(240/28) * ceil(220/28) = 72.
    assert seen and all(n == 2833 + 5667 for n in seen), seen


def test_model_with_unknown_image_rule_reserves_a_conservative_upper_bound(tmp_path, fake_openai_factory,
                                                                          monkeypatch):
    seen = reserved_image_tokens(tmp_path, fake_openai_factory(), "glm-4v-9b", monkeypatch)
    bound = math.ceil(SIZE[0] / 16) * math.ceil(SIZE[1] / 16)  # 16-px patches: denser than any common encoder
    assert seen and all(n == bound for n in seen), seen


def test_reservation_is_never_below_either_rule() -> None:
    from imgtag.pricing.image_rules import other_image_tokens, reservation_image_tokens

    claude_model = catalogue().models["claude-haiku-5-5"]
    for w, h in ((200, 200), (504, 380), (1024, 1024), (1568, 1000), (2000, 300)):
        claude = math.ceil(w / 28) * math.ceil(h / 28)
        assert reservation_image_tokens(w, h, claude, claude_model) == claude
        for name in ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "o4-mini", "glm-4v-9b"):
            model = extra_model(name)
            assert model is not None
            n = reservation_image_tokens(w, h, claude, model)
            assert n >= math.ceil(w / 16) * math.ceil(h / 16) and n >= claude, (name, w, h)
            assert n >= (other_image_tokens(w, h, model) or 0), (name, w, h)


def test_retry_estimate_counts_images_by_the_models_own_rule() -> None:
    from types import SimpleNamespace

    from imgtag.app.retry_plan import RetryPlan, estimated_cost
    from imgtag.presets import load_preset
    from imgtag.pricing.estimate import reserve_tokens

    claude_count = 70  # preprocessing's 28-px count for a 240x220 image
    model = catalogue().get("gpt-4o-mini")
    target = SimpleNamespace(model=model, preset=load_preset("ecommerce"))
    plan = RetryPlan(None, visual_tokens=[claude_count], sent_sizes=[SIZE])
    claude_rule = RetryPlan(None, visual_tokens=[claude_count], sent_sizes=[(None, None)])
    assert reserve_tokens(claude_count, *SIZE, model) > 10 * claude_count  # one 512-px tile is thousands
    assert estimated_cost(plan, target, batch=False) > 2 * estimated_cost(claude_rule, target, batch=False)
