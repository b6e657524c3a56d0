"""A sync rerun on a folder whose images are in live batches: says where they are and how to collect them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagegen import make_images, run_cli


def test_sync_rerun_points_to_live_batches(tmp_path: Path, fake_anthropic_factory: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 3)
    fake = fake_anthropic_factory(batch_processing_s=30.0)
    out = tmp_path / "dt"
    base = ["run", str(tmp_path / "in"), "--out", str(out), "-q"]
    code, output = run_cli([*base, "--mode", "batch", "--poll-interval", "0.05", "--detach"], fake.env(), monkeypatch)
    assert code == 0, output

    code, output = run_cli(base, fake.env(), monkeypatch)
    assert code == 1, output
    assert "already done by earlier runs" not in output  # nothing is done: all 3 wait on the server
    hints = [line for line in output.splitlines() if "in batches still on the server" in line]
    assert len(hints) == 1, output
    assert hints[0].startswith("imgtag: 3 images are in batches still on the server")
    assert "--mode batch" in hints[0] and "imgtag cancel" in hints[0]
    assert fake.stats.messages_requests == 0  # nothing is asked again (and paid twice) in sync mode
