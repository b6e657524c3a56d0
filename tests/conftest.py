"""Shared test fixtures: where the real-image corpus lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.fakes.fixtures"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The corpus sits beside the project checkout (../shared/corpus); IMGTAG_CORPUS overrides it.
CORPUS = Path(os.environ.get("IMGTAG_CORPUS", PROJECT_ROOT.parent / "shared" / "corpus"))
EDGE = CORPUS / "edge"
PHOTOS = CORPUS / "photos"


@pytest.fixture(scope="session")
def corpus() -> Path:
    assert CORPUS.is_dir(), f"test corpus not found at {CORPUS} (set IMGTAG_CORPUS)"
    return CORPUS
