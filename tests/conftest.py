"""Shared test fixtures: where the real-image corpus lives."""

from __future__ import annotations

import os
import sys
import uuid
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


# -- nothing left behind ----------------------------------------------------------------------------
# Every process a test starts inherits this marker; after the suite, any marked process that is no longer
# below pytest (a decode worker or forkserver orphaned by a killed imgtag) fails the session.
_SESSION = os.environ.setdefault("IMGTAG_TEST_SESSION", uuid.uuid4().hex)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    from proctree import marked_orphans, reap, wait_gone

    left = wait_gone(marked_orphans(_SESSION, os.getpid()), 2.0)
    if left:
        reap(left)
        session.config.get_terminal_writer().line(
            f"imgtag tests left {len(left)} orphaned processes behind (pids {sorted(left)}); killed them", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
