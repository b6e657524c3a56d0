"""Patch maths: must agree with the provider's own resize rule (api-facts.md section A)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgtag.pricing.sizing import HIGH_RES, STANDARD, TIERS, VisionTier, fit_size, visual_tokens


def test_visual_tokens_is_ceil_patches() -> None:
    assert visual_tokens(28, 28) == 1
    assert visual_tokens(29, 28) == 2
    assert visual_tokens(1000, 1000) == 36 * 36 == 1296  # the docs' example
    assert visual_tokens(1920, 1080) == 2691
    assert visual_tokens(1, 1) == 1
    assert visual_tokens(56, 56, patch=14) == 16


def test_documented_example_1920x1080() -> None:
    assert fit_size(1920, 1080, STANDARD) == (1456, 819)
    assert visual_tokens(1456, 819) == 1560
    assert fit_size(1920, 1080, HIGH_RES) == (1920, 1080)  # 2691 tokens, under 4784
    assert fit_size(1080, 1920, STANDARD) == (819, 1456)  # symmetric


def test_tiers() -> None:
    assert (STANDARD.max_long_edge, STANDARD.max_patches, STANDARD.patch) == (1568, 1568, 28)
    assert (HIGH_RES.max_long_edge, HIGH_RES.max_patches) == (2576, 4784)
    assert TIERS["standard"] is STANDARD and TIERS["high"] is HIGH_RES


def test_small_images_unchanged_and_preset_cap() -> None:
    assert fit_size(640, 480, STANDARD) == (640, 480)
    assert fit_size(1, 1, STANDARD) == (1, 1)
    assert fit_size(4000, 3000, STANDARD, max_long_edge=768) == (768, 576)
    assert fit_size(4000, 3000, HIGH_RES, max_long_edge=4000) == fit_size(4000, 3000, HIGH_RES)


def test_extreme_aspect_keeps_one_pixel() -> None:
    w, h = fit_size(100_000, 3, STANDARD)
    assert w == 1568 and h == 1
    w, h = fit_size(2, 50_000, HIGH_RES)
    assert (w, h) == (1, 2576)


def test_rejects_empty() -> None:
    with pytest.raises(ValueError):
        fit_size(0, 10, STANDARD)


def _limits(tier: VisionTier, cap: int | None) -> int:
    return tier.max_long_edge if cap is None else min(tier.max_long_edge, cap)


def _within(w: int, h: int, tier: VisionTier, cap: int | None) -> bool:
    return max(w, h) <= _limits(tier, cap) and visual_tokens(w, h, tier.patch) <= tier.max_patches


@settings(max_examples=400, deadline=None)
@given(
    w=st.integers(1, 30_000),
    h=st.integers(1, 30_000),
    tier=st.sampled_from([STANDARD, HIGH_RES]),
    cap=st.one_of(st.none(), st.integers(1, 4000)),
)
def test_fit_size_properties(w: int, h: int, tier: VisionTier, cap: int | None) -> None:
    fw, fh = fit_size(w, h, tier, cap)
    # never exceeds a limit
    assert _within(fw, fh, tier, cap)
    # never upscales, never vanishes
    assert 1 <= fw <= w and 1 <= fh <= h
    # keeps the aspect ratio (to within rounding of the short side)
    if w >= h:
        assert (fw == max(fw, fh) and abs(fh - fw * h / w) <= 0.5 + 1e-9) or fh == 1
    else:
        assert (fh == max(fw, fh) and abs(fw - fh * w / h) <= 0.5 + 1e-9) or fw == 1
    # unchanged when it already fits
    if _within(w, h, tier, cap):
        assert (fw, fh) == (w, h)
    # maximal: one more pixel on the long edge breaks a limit or upscales
    if w >= h:
        bw = fw + 1
        bh = min(h, max(1, round(bw * h / w)))
        assert bw > w or not _within(bw, bh, tier, cap)
    else:
        bh = fh + 1
        bw = min(w, max(1, round(bh * w / h)))
        assert bh > h or not _within(bw, bh, tier, cap)


def test_detail_cap_never_takes_the_short_side_below_the_minimum() -> None:
    # 3:1 panorama at a 512 px cap would be 171 px tall; the cap gives way to keep 200 px.
    assert fit_size(3000, 1000, STANDARD, max_long_edge=512, min_short_edge=200) == (600, 200)
    assert fit_size(4000, 3000, STANDARD, max_long_edge=512, min_short_edge=200) == (512, 384)
    # Never upscales: an image already under the minimum stays as it is.
    assert fit_size(450, 150, STANDARD, max_long_edge=512, min_short_edge=200) == (450, 150)
    # And the tier still wins: an extreme strip stays within the tier's patch budget.
    w, h = fit_size(20000, 1000, STANDARD, max_long_edge=512, min_short_edge=200)
    assert w <= 1568 and visual_tokens(w, h) <= 1568
