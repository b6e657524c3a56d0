"""--engine ray end to end: a local Ray cluster (num_cpus=2, no dashboard) started once for this module, the real
CLI, SDKs and fake servers. Same results as the local engine; a killed driver's rerun asks nothing answered and
written; one advertised limit shared by every worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from tests.fakes.anthropic_server import FakeConfig

from imagegen import close_to, make_images, read_jsonl, run_cli
from imgtag.request.distributed.workfolder import WorkFolder
from test_events import parse as parse_events

ray = pytest.importorskip("ray")  # in dev: CI runs these; a plain install without the extra cannot
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    import logging

    # The keys the fakes accept are in the nodes' environment, as an operator sets them on a cluster: imgtag
    # never sends a key through Ray, and the workers of a local cluster inherit this process's environment.
    keys = {"ANTHROPIC_API_KEY": FakeConfig().api_key, "OPENAI_API_KEY": "sk-test-openai"}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_keys_never_travel_through_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgtag.request.distributed.pipeline import ENV_PREFIXES, shareable_env
    from imgtag.request.distributed.worker import open_worker_provider

    environ = {"ANTHROPIC_API_KEY": "test-key-not-real-SECRET-000000", "ANTHROPIC_BASE_URL": "http://gw:1",
               "OPENAI_API_KEY": "x", "IMAGEDESCRIBER_TOKEN": "y", "HOME": "/root"}
    assert shareable_env(environ, ENV_PREFIXES) == {"ANTHROPIC_BASE_URL": "http://gw:1"}
    # A worker whose node has no key stops the run with one sentence saying where to set it.
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    provider, fatal = open_worker_provider("anthropic", {}, {"ANTHROPIC_BASE_URL": "http://gw:1"})
    assert provider is None and fatal is not None
    assert "Ray workers" in fatal and "ANTHROPIC_API_KEY" in fatal and "nodes" in fatal


def test_workers_use_their_nodes_key_never_the_drivers(tmp_path, cluster, fake_anthropic_factory, monkeypatch):
    """The server accepts only the driver's key; the nodes hold another. Were the driver's key shipped through
    Ray, the workers would use it and succeed; they use their own, are refused, and the run stops cleanly."""
    make_images(tmp_path / "in", 4)
    fake = fake_anthropic_factory(api_key="test-key-not-real-SECRET-driver0")
    out = tmp_path / "ray"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--engine", "ray", "-q"], fake.env(),
                           monkeypatch)
    assert code == 2, output
    assert "API key" in output and "Traceback" not in output
    assert "test-key-not-real-SECRET" not in output and FakeConfig().api_key not in output
    assert fake.stats.answered_by_key == {}
    assert {r["status"] for r in read_jsonl(out / "results.jsonl")} == {"pending"}  # nothing lost, all to do


def _comparable(rows: list[dict]) -> list[tuple]:
    return sorted((r["path"], r["status"], r["duplicate_of"], str(r["fields"]), str(r["error"])) for r in rows)


def test_same_results_as_the_local_engine_anthropic(tmp_path, cluster, fake_anthropic_factory, monkeypatch):
    made = make_images(tmp_path / "in", 12)
    (tmp_path / "in" / "copy.jpg").write_bytes((tmp_path / "in" / "img_0003.jpg").read_bytes())
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    local_fake = fake_anthropic_factory(latency_s=0.02)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "local"), "-q", "--events",
                            str(tmp_path / "local.jsonl")], local_fake.env(), monkeypatch)
    assert code == 1, output  # broken.jpg
    fake = fake_anthropic_factory(latency_s=0.02)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "ray"), "--engine", "ray", "-q",
                            "--events", str(tmp_path / "ray.jsonl")], fake.env(), monkeypatch)
    assert code == 1, output
    # The same events about the images (docs/events.md: Ray sends run_started, image_done, progress, run_finished).
    local_events, ray_events = (parse_events((tmp_path / f"{e}.jsonl").read_text()) for e in ("local", "ray"))
    def told(events: list[dict]) -> list[tuple]:
        return sorted((e["path"], e["status"], e["error_type"], e["cached"]) for e in events
                      if e["type"] == "image_done")

    assert told(ray_events) == told(local_events) and len(told(ray_events)) == 14
    assert ray_events[0]["engine"] == "ray" and ray_events[-1]["by_status"] == local_events[-1]["by_status"]
    assert "Traceback" not in output
    local_rows = read_jsonl(tmp_path / "local" / "results.jsonl")
    ray_rows = read_jsonl(tmp_path / "ray" / "results.jsonl")
    assert _comparable(ray_rows) == _comparable(local_rows)
    # The same tokens paid, one prompt-cache write in all: the cluster's first request goes alone until its
    # answer begins (PacerActor.warm_up), as the local engine's does. Which image pays that write is whichever
    # actor's request reaches the cluster pacer first, so usage is compared as a whole, not path by path.
    def usage(rows: list[dict]) -> list[tuple]:
        return sorted(tuple(sorted(r["usage"].items())) for r in rows)

    assert usage(ray_rows) == usage(local_rows)
    assert sum(1 for r in ray_rows if r["usage"]["cache_creation_input_tokens"]) == 1
    by_path = {r["path"]: r for r in ray_rows}
    for name, colour in made.items():
        assert close_to(by_path[name]["fields"]["color"], colour)
    assert fake.stats.messages_requests == local_fake.stats.messages_requests == 12  # the copy is not asked
    code, status = run_cli(["status", "--out", str(tmp_path / "ray")], fake.env(), monkeypatch)
    assert code == 0 and "ok 13" in status and "broken.jpg" in status


def test_packs_on_ray_as_on_the_local_engine(tmp_path, cluster, fake_anthropic_factory, monkeypatch):
    """--images-per-request on Ray: the workers' engine asks packs (one request for several images, each answer
    split back onto its own image), as the local engine does."""
    made = make_images(tmp_path / "in", 12)
    results = {}
    for engine in ("local", "ray"):
        fake = fake_anthropic_factory(latency_s=0.02)
        code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / engine), "--engine", engine,
                                "--images-per-request", "4", "--ray-batch-size", "12", "-q"], fake.env(), monkeypatch)
        assert code == 0, output
        assert fake.stats.messages_requests == 3, engine  # 12 images, 4 per request
        results[engine] = read_jsonl(tmp_path / engine / "results.jsonl")
    assert _comparable(results["ray"]) == _comparable(results["local"])
    by_path = {r["path"]: r for r in results["ray"]}
    for name, colour in made.items():
        assert close_to(by_path[name]["fields"]["color"], colour)  # each answer on its own image


def test_same_results_as_the_local_engine_openai(tmp_path, cluster, fake_openai_factory, monkeypatch):
    make_images(tmp_path / "in", 8)
    outs = {}
    for engine in ("local", "ray"):
        fake = fake_openai_factory(latency_s=0.02)
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
        code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / engine), "--provider", "openai",
                                "--model", "glm-4v-9b", "--engine", engine, "-q"], fake.env(), monkeypatch)
        assert code == 0, output
        assert fake.stats.answered == 8
        outs[engine] = read_jsonl(tmp_path / engine / "results.jsonl")
    assert _comparable(outs["ray"]) == _comparable(outs["local"])
    assert {r["status"] for r in outs["ray"]} == {"ok"}


def _driver(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "imgtag", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_driver_killed_twice_then_rerun_asks_nothing_answered_and_written(tmp_path, cluster, fake_anthropic_factory):
    n = 60
    make_images(tmp_path / "in", n)
    fake = fake_anthropic_factory(latency_s=0.15)
    out = tmp_path / "out"
    env = {**os.environ, **fake.env()}
    args = ["run", str(tmp_path / "in"), "--out", str(out), "--engine", "ray", "--ray-address", cluster,
            "--concurrency", "4", "--ray-batch-size", "2", "-q"]
    folder = WorkFolder(str(out / "ray-work"))
    counts_when_written: dict[str, int] = {}  # image (the fake's key) -> times asked when its shard was seen
    for kill in (1, 2):
        seen = len(folder.result_names()) if (out / "ray-work").exists() else 0
        proc = _driver(args, env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "ray-work" / "results").exists() and len(folder.result_names()) >= seen + 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the driver ended before kill {kill}: {proc.communicate()[0]}"
        names = folder.result_names()  # complete shards at the kill (later ones were in flight then)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        asked = dict(fake.stats.answered_by_key)
        for name in names:
            for row in folder.read_results(name):
                if row["status"] == "ok":  # the fake keys answers by mean colour: the answer's color field
                    counts_when_written.setdefault(json.loads(row["fields"])["color"], asked.get(
                        json.loads(row["fields"])["color"], 0))
    assert counts_when_written, "nothing was written before the kills; the test proves nothing"
    assert sum(fake.stats.answered_by_key.values()) < n, "the kills came too late to interrupt anything"
    proc = _driver(args, env)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == n and {r["status"] for r in rows} == {"ok"}
    assert len(fake.stats.answered_by_key) == n
    # An answer written to a shard before a kill is ingested by the next driver and never asked again.
    asked_later = {key: fake.stats.answered_by_key[key] - count for key, count in counts_when_written.items()}
    assert not any(asked_later.values()), asked_later
    # The rest asked twice were in flight at a kill: at most --concurrency (4) requests plus the answered halves
    # of unwritten batches (2 actors x 4 concurrent batches x 2 rows), per kill.
    assert sum(fake.stats.answered_by_key.values()) <= n + 2 * (4 + 2 * 4 * 2)


def test_two_workers_share_one_advertised_limit(tmp_path, cluster, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 80)
    fake = fake_anthropic_factory(rpm=1200, burst_s=1.0, latency_s=0.2)  # 20 req/s, a 1-second bucket
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--engine", "ray",
                            "--ray-actors", "2", "--ray-batch-size", "8", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    # One pacer keeps both actors inside the one bucket: at most 2% of the requests meet a 429 (docs/scale.md),
    # every one retried, nothing lost or asked twice. The exact pacing is the virtual-clock test
    # test_pacer.py::test_workers_sharing_one_pacer_share_the_limit.
    assert fake.stats.rate_limited <= 0.02 * fake.stats.messages_requests, (
        fake.stats.rate_limited, fake.stats.messages_requests)
    assert len(fake.stats.answered_by_key) == 80 and set(fake.stats.answered_by_key.values()) == {1}
    assert {r["status"] for r in read_jsonl(tmp_path / "o" / "results.jsonl")} == {"ok"}


def _descendants_named(root: int, needle: str) -> list[int]:
    """Processes under `root` (this test's own Ray cluster) whose command line contains `needle`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if needle.encode() in fh.read():
                    found.append(pid)
        except OSError:
            pass
        stack.extend(children.get(pid, []))
    return found


def test_a_worker_killed_mid_task_is_retried_without_a_duplicate_row(tmp_path, cluster, fake_anthropic_factory):
    n = 28
    make_images(tmp_path / "in", n)
    fake = fake_anthropic_factory(latency_s=0.1)
    out = tmp_path / "out"
    proc = _driver(["run", str(tmp_path / "in"), "--out", str(out), "--engine", "ray", "--ray-address", cluster,
                    "--ray-batch-size", "4", "-q"], {**os.environ, **fake.env()})
    folder = WorkFolder(str(out / "ray-work"))
    killed: list[int] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and not killed:
        if (out / "ray-work" / "results").exists() and folder.result_names():
            for pid in _descendants_named(os.getpid(), "MapBatches(Asker)")[:1]:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
    assert killed, "no ask actor was found to kill; the test proves nothing"
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    rows = read_jsonl(out / "results.jsonl")
    assert sorted(r["path"] for r in rows) == sorted(p.name for p in (tmp_path / "in").iterdir())  # one row each
    assert {r["status"] for r in rows} == {"ok"}
    assert len(fake.stats.answered_by_key) == n
