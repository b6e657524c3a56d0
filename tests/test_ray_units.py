"""--engine ray without a cluster: result-shard ingest is idempotent, worker problems carry their image, and the
default engine never imports Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from imagegen import make_images
from imgtag.ingest.preprocess import PrepareRequest
from imgtag.pricing.costs import Usage
from imgtag.request.distributed.results import IngestTally, ingest_all, ingest_shard
from imgtag.request.distributed.worker import Recorder, _result_row, decode_batch
from imgtag.request.distributed.workfolder import MANIFEST_SCHEMA, WorkFolder
from imgtag.store import FileRecord, Store, WorkKey

KEY = WorkKey("v1", "anthropic", "claude-test")


@pytest.fixture(autouse=True)
def _interrupts_left_to_pytest() -> Iterator[None]:
    """decode_batch sets up the process it runs in as a decode worker (once): Ctrl-C ignored, left to the
    driver. Here that process is pytest's; without this, pytest and every child it starts later would ignore
    SIGINT."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def _store_with_jobs(tmp_path: Path, n: int) -> tuple[Store, list[int]]:
    store = Store(tmp_path / "out")
    ids = []
    for i in range(n):
        rec = FileRecord(path=str(tmp_path / f"{i}.jpg"), display=f"{i}.jpg", root=None, size=1, mtime_ns=1,
                         status="ok", sha256=f"{i:064x}")
        fid = store.upsert_file(rec, None)
        ids.append(store.job_for(rec.sha256 or "", KEY, fid).id)
    return store, ids


def _row(job_id: int, status: str, fields: dict | None, cost: float = 0.01, error: str | None = None) -> dict:
    rec = Recorder()
    commit = {"status": status, "mode": "sync", "fields": fields, "error_type": error, "error_message": error,
              "request_id": "req_1"}
    rec.record_attempt(job_id, None, started_at="2026-01-01T00:00:00", outcome=status, mode="sync",
                       http_status=200, usage=Usage(100, 20), cost=cost, commit_job=commit)
    src = {"job_id": job_id, "store_id": "S", "sha256": "x", "display": f"{job_id}.jpg"}
    return _result_row(src, rec, None, None)


def _counts(store: Store) -> tuple[int, float, list[tuple]]:
    (attempts,) = store.db.execute("SELECT COUNT(*) FROM attempts").fetchone()
    (cost,) = store.db.execute("SELECT SUM(cost_usd) FROM jobs").fetchone()
    jobs = store.db.execute("SELECT id, status, fields, attempts FROM jobs ORDER BY id").fetchall()
    return attempts, cost, [tuple(j) for j in jobs]


def test_a_shard_ingested_twice_changes_nothing(tmp_path: Path) -> None:
    store, ids = _store_with_jobs(tmp_path, 3)
    folder = WorkFolder(str(tmp_path / "work"))
    folder.prepare()
    name = folder.write_results([_row(ids[0], "ok", {"color": "#ff0000"}), _row(ids[1], "failed", None,
                                                                                 error="refused")])
    tally = IngestTally()
    assert ingest_shard(store, folder, name, None, "S", tally)
    before = _counts(store)
    assert before[0] == 2 and [j[1] for j in before[2]] == ["ok", "failed", "pending"]
    assert not ingest_shard(store, folder, name, None, "S", tally)
    assert ingest_all(store, folder, None, "S", tally) == 0
    store.close()
    reopened = Store(tmp_path / "out")  # a new driver after a crash: the store remembers what it applied
    assert ingest_all(reopened, folder, None, "S", IngestTally()) == 0
    assert _counts(reopened) == before
    reopened.close()


def test_an_ok_job_is_never_overwritten_but_a_second_answer_is_still_paid(tmp_path: Path) -> None:
    store, ids = _store_with_jobs(tmp_path, 1)
    folder = WorkFolder(str(tmp_path / "work"))
    folder.prepare()
    first = folder.write_results([_row(ids[0], "ok", {"color": "#00ff00"}, cost=0.01)])
    second = folder.write_results([_row(ids[0], "failed", None, cost=0.02, error="invalid_output")])
    tally = IngestTally()
    ingest_shard(store, folder, first, None, "S", tally)
    ingest_shard(store, folder, second, None, "S", tally)
    attempts, cost, jobs = _counts(store)
    assert jobs[0][1] == "ok" and json.loads(jobs[0][2]) == {"color": "#00ff00"}
    assert attempts == 2 and abs(cost - 0.03) < 1e-9  # both requests were paid for: the spend stays true
    store.close()


def test_rows_of_another_store_and_unreadable_shards_are_left_alone(tmp_path: Path) -> None:
    store, ids = _store_with_jobs(tmp_path, 1)
    folder = WorkFolder(str(tmp_path / "work"))
    folder.prepare()
    folder.write_results([_row(ids[0], "ok", {"color": "#00ff00"})])
    (tmp_path / "work" / "results" / "junk.parquet").write_bytes(b"not parquet")
    tally = IngestTally()
    ingest_all(store, folder, None, "another-store", tally)
    assert _counts(store)[2][0][1] == "pending"
    assert any("junk.parquet" in p for p in tally.problems)
    store.close()


def test_a_file_changed_after_planning_is_named_and_left_pending(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 2)
    paths = sorted((tmp_path / "in").iterdir())
    batch = pa.Table.from_pylist(
        [{"job_id": 1, "sha256": "0" * 64, "display": "img_0000.jpg", "source": os.fsencode(paths[0]),
          "store_id": "S"},
         {"job_id": 2, "sha256": "1" * 64, "display": "gone.jpg", "source": os.fsencode(tmp_path / "gone.jpg"),
          "store_id": "S"}], schema=MANIFEST_SCHEMA)
    out = decode_batch(batch, PrepareRequest(path="")).to_pylist()
    assert all(r["encoded"] is None for r in out)
    assert all("changed (or vanished) since it was planned" in r["problem"] for r in out)
    row = _result_row(out[1], Recorder(), out[1]["problem"], None)
    assert row["status"] == "pending" and row["display"] == "gone.jpg" and "planned" in row["error_message"]


def test_a_worker_reserves_by_the_models_own_image_rule(tmp_path: Path) -> None:
    """The budget reservation on a Ray worker counts an image as the model will: Claude's 28-px patches for
    Claude, and for an OpenAI-compatible model the larger of its catalogue rule and a 16-px bound, as the local
    engine does (not Claude's count, which undercounts it)."""
    import asyncio
    import hashlib

    from imgtag.presets import load_preset
    from imgtag.pricing.catalogue import catalogue
    from imgtag.pricing.estimate import prompt_tokens
    from imgtag.request.distributed.worker import _items
    from imgtag.request.engine import EngineSettings

    make_images(tmp_path / "in", 1, size=(640, 480))
    path = next((tmp_path / "in").iterdir())
    batch = pa.Table.from_pylist([{"job_id": 1, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                   "display": path.name, "source": os.fsencode(path), "store_id": "S"}],
                                 schema=MANIFEST_SCHEMA)
    rows = decode_batch(batch, PrepareRequest(path="")).to_pylist()
    assert rows[0]["problem"] is None
    width, height = rows[0]["out_width"], rows[0]["out_height"]
    assert rows[0]["visual_tokens"] == -(-width // 28) * -(-height // 28)
    preset = load_preset("ecommerce")

    async def image_tokens(model_id: str) -> int:
        model = catalogue().get(model_id)
        settings = EngineSettings(key=WorkKey(preset.version, "x", model.id), preset=preset, model=model)
        items = [item async for item in _items(rows, settings)]
        return items[0].estimate.input_tokens - prompt_tokens(preset, model)

    assert asyncio.run(image_tokens("claude-sonnet-4-6")) == rows[0]["visual_tokens"]
    assert asyncio.run(image_tokens("gpt-4o")) >= -(-width // 16) * -(-height // 16) > rows[0]["visual_tokens"]


def test_the_default_engine_never_imports_ray(tmp_path: Path, fake_anthropic) -> None:
    make_images(tmp_path / "in", 2)
    code = ("import sys\nfrom imgtag.cli.commands import app\n"
            "try:\n    app([*sys.argv[1:]], standalone_mode=False)\n"
            "finally:\n    print('RAY_IMPORTED' if any(m == 'ray' or m.startswith('ray.') for m in sys.modules)"
            " else 'NO_RAY')\n")
    env = {**os.environ, **fake_anthropic.env()}
    done = subprocess.run([sys.executable, "-c", code, "run", str(tmp_path / "in"), "--out", str(tmp_path / "o"),
                           "-q"], env=env, capture_output=True, text=True, timeout=120)
    assert "NO_RAY" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "o" / "results.jsonl").read_text().count('"ok"') == 2


def test_a_cluster_that_cannot_be_reached_is_one_sentence_and_exit_2(tmp_path: Path, fake_anthropic,
                                                                     monkeypatch) -> None:
    import socket

    from imagegen import one_sentence, run_cli

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    make_images(tmp_path / "in", 2)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--engine", "ray",
                            "--ray-address", f"127.0.0.1:{port}", "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 2, output
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in one_sentence(output)
    assert not (tmp_path / "o").exists(), "nothing is created for a cluster that cannot be used"
    assert fake_anthropic.stats.messages_requests == 0


def test_a_refused_connection_is_one_sentence_and_creates_nothing(tmp_path: Path, fake_anthropic,
                                                                 monkeypatch) -> None:
    import ray

    from imagegen import one_sentence, run_cli
    from imgtag.request.distributed import cluster

    def refuse(**_kw: object) -> None:
        os.write(2, b"[2026-12-07 02:36:06,009 W 1 1] gcs_client.cc:210: Failed to get cluster ID\n")
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379.\nmore detail")

    monkeypatch.setattr(cluster, "_probe", lambda address: None)
    monkeypatch.setattr(ray, "init", refuse)
    make_images(tmp_path / "in", 2)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--engine", "ray",
                            "--ray-address", "10.0.0.9:6379", "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 2, output
    line = one_sentence(output)
    assert "cannot use the Ray cluster: ConnectionError: Failed to connect to Ray cluster at 10.0.0.9:6379" in line
    assert "more detail" not in output
    assert not (tmp_path / "o").exists()


def test_ray_lines_on_fd2_go_to_the_file_and_python_lines_to_the_terminal(tmp_path: Path) -> None:
    """What Ray's C++ core writes to fd 2 goes to --out/ray.log (what came before the cluster was reached too);
    imgtag's own lines on sys.stderr still reach the terminal; restore puts fd 2 back."""
    script = f"""
import os, sys
from pathlib import Path
from imgtag.request.distributed.ray_logs import StderrRoute
route = StderrRoute().start()
os.write(2, b"gcs_client.cc:210: before the cluster was reached\\n")
route.keep_in(Path({str(tmp_path / "out")!r}))
os.write(2, b"core_worker.cc:1: constructor arguments in the object store\\n")
print("imgtag: progress line", file=sys.stderr, flush=True)
route.restore()
os.write(2, b"after restore\\n")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "imgtag: progress line\nafter restore\n"
    assert (tmp_path / "out" / "ray.log").read_text() == ("gcs_client.cc:210: before the cluster was reached\n"
                                                          "core_worker.cc:1: constructor arguments in the object "
                                                          "store\n")


def test_what_rays_threads_print_to_stdout_goes_to_the_file_too(tmp_path: Path) -> None:
    """Ray's driver prints the cluster's warnings (a raylet's "4 PYTHON worker processes have been started ...",
    under load) from its error-listening thread to the sys.stdout of the moment: they reached the terminal, between
    imgtag's lines, in a CI run. Lines printed by Ray's threads (named ray_...) now go to the file; imgtag's own
    stdout is untouched."""
    script = f"""
import sys, threading
from pathlib import Path
from imgtag.request.distributed.ray_logs import StderrRoute
route = StderrRoute().start()
route.keep_in(Path({str(tmp_path / "out")!r}))
listener = threading.Thread(target=lambda: print("(raylet) WARNING: 4 PYTHON worker processes have been started"),
                            name="ray_listen_error_messages")
listener.start(); listener.join()
print("8 files: ok 8", flush=True)
route.restore()
print("after restore", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("8 files: ok 8\nafter restore\n", "")
    assert (tmp_path / "out" / "ray.log").read_text() == ("(raylet) WARNING: 4 PYTHON worker processes have been "
                                                          "started\n")
