"""Shared test fixtures: where the real-image corpus lives."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["tests.fakes.fixtures"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The full corpus sits beside the project checkout (../shared/corpus); IMGTAG_CORPUS overrides it. Without it
# (a fresh clone), tests use the small licensed subset vendored in tests/corpus (see its README.md), which
# holds every file the rule tests name; tests over the whole corpus skip and say why.
SHARED_CORPUS = Path(os.environ.get("IMGTAG_CORPUS", PROJECT_ROOT.parent / "shared" / "corpus"))
VENDORED_CORPUS = PROJECT_ROOT / "tests" / "corpus"
FULL_CORPUS = SHARED_CORPUS.is_dir()
CORPUS = SHARED_CORPUS if FULL_CORPUS else VENDORED_CORPUS
EDGE = CORPUS / "edge"
PHOTOS = CORPUS / "photos"
NO_FULL_CORPUS = (f"needs the full image corpus (not found at {SHARED_CORPUS}; set IMGTAG_CORPUS); "
                  "the vendored subset in tests/corpus covers every rule")
needs_full_corpus = pytest.mark.skipif(not FULL_CORPUS, reason=NO_FULL_CORPUS)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The corpus in use: the full one when present, else the vendored subset (every named rule file)."""
    assert CORPUS.is_dir(), f"test corpus not found at {CORPUS}"
    return CORPUS


@pytest.fixture(scope="session")
def full_corpus() -> Path:
    """Tests over the whole corpus: skipped, with the reason shown, when only the vendored subset exists."""
    if not FULL_CORPUS:
        pytest.skip(NO_FULL_CORPUS)
    return SHARED_CORPUS


@pytest.fixture(autouse=True)
def own_user_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets an empty user-level cache (learned rate limits, request/limits_cache.py): a test never
    starts from what another learned, and never writes to the home folder of whoever runs the suite."""
    monkeypatch.setenv("IMGTAG_CACHE_DIR", str(tmp_path_factory.mktemp("user-cache")))


# -- nothing left behind ----------------------------------------------------------------------------
# Every process a test starts inherits this marker; after the suite, any marked process that is no longer
# below pytest (a decode worker or forkserver orphaned by a killed imgtag) fails the session.
_SESSION = os.environ.setdefault("IMGTAG_TEST_SESSION", uuid.uuid4().hex)
ORPHAN_GRACE_S = 20.0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    from proctree import marked_orphans, reap, wait_gone

    # A process still shutting down (Ray's, after ray.shutdown(), take seconds on a loaded machine) is given
    # time to go; an orphan never goes, so a longer grace costs nothing when all is well and misses nothing.
    left = wait_gone(marked_orphans(_SESSION, os.getpid()), ORPHAN_GRACE_S)
    if left:
        reap(left)
        session.config.get_terminal_writer().line(
            f"imgtag tests left {len(left)} orphaned processes behind (pids {sorted(left)}); killed them", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
