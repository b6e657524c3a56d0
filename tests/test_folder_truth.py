"""What the output folder, the summary and `status` report (issue 17 items 1-6): counts that add up, one path
base, nothing written by a refused or read-only command, messages that say what was written."""

from __future__ import annotations

import dataclasses

from imagegen import make_images, one_sentence, run_cli


def test_a_provider_without_batch_refuses_batch_mode_before_creating_anything(tmp_path, monkeypatch):
    # The refusal comes from the provider's declared capabilities (whichever provider lacks a batch API),
    # before the store, the progress line or any results file exists.
    from imgtag.providers.openai_provider import OpenAIProvider

    monkeypatch.setattr(OpenAIProvider, "capabilities", dataclasses.replace(OpenAIProvider.capabilities, batch=False))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    make_images(tmp_path / "ds", 2)
    out = tmp_path / "x"
    code, output = run_cli(["run", str(tmp_path / "ds"), "--provider", "openai", "--mode", "batch",
                            "--out", str(out)], {}, monkeypatch)
    assert code == 2
    line = one_sentence(output)
    assert "--mode batch" in line and "openai" in line
    assert not out.exists()
