"""The batch flow is provider-neutral: a provider whose batch API is not Anthropic's (tests/fakes/toy_batches.py,
shaped like a file-based JSONL batch API) runs `--mode batch`, is reconciled after a crash between create and
commit, and is cancelled, through the BatchAPI protocol alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import toy_batches

from batchhelp import assert_all_ok_and_own_colour, query
from imagegen import make_images, run_cli
from imgtag.providers import BUILTIN
from imgtag.request.batch import submit as batch_submit

FAST = ["--provider", "toy", "--mode", "batch", "--poll-interval", "0.01", "-q"]


class Crash(BaseException):
    """Stands in for kill -9: nothing after it runs, nothing catches it."""


@pytest.fixture(autouse=True)
def toy_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(BUILTIN, "toy", "tests.fakes.toy_batches:ToyBatchProvider")
    toy_batches.reset()
    yield
    toy_batches.reset()


def test_another_batch_api_runs_batch_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 7)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--batch-max-requests", "3"],
                           {}, monkeypatch)
    assert code == 0, output
    assert_all_ok_and_own_colour(out, made, mode="batch")
    assert len(toy_batches.CREATED) == 3
    assert [r[0] for r in query(out, "SELECT item_count FROM batches ORDER BY id")] == [3, 3, 1]
    assert all(i.startswith("toybatch_") for (i,) in query(out, "SELECT id FROM batches"))


def test_another_batch_api_is_reconciled_after_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 4)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), *FAST]

    def crash(*_a: Any, **_k: Any) -> None:
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(batch_submit.sb, "attach_batch", crash)  # created remotely, id never stored
        with pytest.raises(Crash):
            run_cli(args, {}, monkeypatch)
    assert len(toy_batches.CREATED) == 1
    code, output = run_cli(args, {}, monkeypatch)
    assert code == 0, output
    assert len(toy_batches.CREATED) == 1, "the batch was found by listing, not created again"
    assert_all_ok_and_own_colour(out, made, mode="batch")


def test_another_batch_api_cancels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    monkeypatch.setattr(toy_batches, "HOLD", True)  # the batch stays in progress until cancelled
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--detach"], {}, monkeypatch)
    assert code == 0, output
    assert query(out, "SELECT DISTINCT status FROM jobs") == [("batched",)]
    code, output = run_cli(["cancel", "--out", str(out)], {}, monkeypatch)
    assert code == 0, output
    assert "canceled; 0 answered and recorded, 0 failed, 3 back to pending" in output
    assert query(out, "SELECT DISTINCT status FROM jobs") == [("pending",)]

    monkeypatch.setattr(toy_batches, "HOLD", False)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST], {}, monkeypatch)
    assert code == 0, output
    assert_all_ok_and_own_colour(out, made, mode="batch")
    assert len(toy_batches.CREATED) == 2
