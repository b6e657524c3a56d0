"""--ray-address against a cluster imgtag did not start: a head and a worker node started by `ray start` on this
machine (token authentication on, as Ray 2.60 turns it on when a token exists), the real CLI as a subprocess.
Without RAY_AUTH_MODE=token the run says what to set and creates nothing; with it, both nodes work and Ray's own
log lines go to --out/ray.log, never to the terminal."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.fakes.anthropic_server import FakeConfig

from imagegen import close_to, make_images, read_jsonl
from proctree import alive

pytest.importorskip("ray")  # in dev: CI runs these; a plain install without the extra cannot
pytestmark = pytest.mark.ray

MARKER = "IMGTAG_TEST_RAY_NODES"  # in every process of the cluster: what the teardown ends, and nothing else
RAY = str(Path(sys.executable).with_name("ray"))
# Lines Ray itself prints: C++ glog lines ("[2026-... W 123 123] core_worker.cc:...") and its Python loggers.
RAY_LINE = re.compile(r"\.cc:\d+|\(raylet\)|\(pid=|core_worker|gcs_client|WARNING|INFO ")


@dataclass
class Cluster:
    address: str
    home: Path           # HOME of the nodes: ~/.ray/auth_token holds the cluster's token
    marker: str          # in the environment of every process of the cluster

    def driver_env(self, token_mode: bool, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAY_", "ANTHROPIC_", "OPENAI_", "IMGTAG_TEST_RAY"))}
        # The driver's own key only opens the provider here; the workers use their nodes' key.
        env.update(HOME=str(self.home), ANTHROPIC_API_KEY=FakeConfig().api_key, **extra)
        if token_mode:
            env["RAY_AUTH_MODE"] = "token"
        return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_pids(marker: str) -> set[int]:
    needle = f"{MARKER}={marker}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    found.add(int(entry))
            except OSError:
                continue
    return found


def _stop(marker: str) -> None:
    """What `ray stop` does, for this cluster's processes only (`ray stop` itself ends every Ray process on the
    machine, other people's clusters included): SIGTERM, a grace period, then SIGKILL, looking again each round
    for processes a raylet started meanwhile."""
    deadline = time.monotonic() + 20
    sig = signal.SIGTERM
    while (pids := _node_pids(marker)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        grace = time.monotonic() + 3.0
        while time.monotonic() < grace and any(alive(p) for p in pids):
            time.sleep(0.1)
        sig = signal.SIGKILL


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not Path(RAY).exists():
        pytest.fail(f"the `ray` command is missing beside {sys.executable}")
    home = tmp_path_factory.mktemp("ray-home")
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))  # a token exists: the head turns auth on
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    marker = uuid.uuid4().hex
    port = _free_port()
    # The nodes' environment, as an operator sets it: the provider's key lives on the nodes, never in Ray.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), ANTHROPIC_API_KEY=FakeConfig().api_key, **{MARKER: marker})
    common = ["--num-cpus", "1", "--object-store-memory", str(100 * 1024 * 1024), "--disable-usage-stats",
              "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp)]
    try:
        subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        # A worker node joins only in token mode, with the token in its HOME.
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", *common], env={**env, "RAY_AUTH_MODE": "token"},
                       check=True, capture_output=True, timeout=120)
        yield Cluster(f"127.0.0.1:{port}", home, marker)
    finally:
        _stop(marker)
        shutil.rmtree(temp, ignore_errors=True)


def _imgtag(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgtag", *args], env=env, capture_output=True, text=True,
                          timeout=240)


def test_without_the_token_mode_it_says_what_to_set_and_creates_nothing(tmp_path: Path, two_nodes: Cluster) -> None:
    make_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    started = time.monotonic()
    done = _imgtag(["run", str(tmp_path / "in"), "--out", str(out), "--engine", "ray", "--ray-address",
                    two_nodes.address], two_nodes.driver_env(token_mode=False, extra={}))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr  # one sentence, no Ray line before it
    assert "RAY_AUTH_MODE=token" in lines[0] and "~/.ray/auth_token" in lines[0], lines[0]
    assert "ray get-auth-token" in lines[0]
    assert not out.exists(), "a run that cannot use the cluster creates nothing"
    assert time.monotonic() - started < 30, "answered without waiting out Ray's 20 s of retries"


def test_a_cluster_imgtag_did_not_start_both_nodes_and_ray_logs_in_out(tmp_path: Path, two_nodes: Cluster,
                                                                      fake_anthropic_factory) -> None:
    made = make_images(tmp_path / "in", 8)
    fake = fake_anthropic_factory()
    out = tmp_path / "out"
    done = _imgtag(["run", str(tmp_path / "in"), "--out", str(out), "--engine", "ray", "--ray-address",
                    two_nodes.address, "--ray-batch-size", "2"],
                   two_nodes.driver_env(token_mode=True, extra={"ANTHROPIC_BASE_URL": fake.base_url}))
    assert done.returncode == 0, done.stderr
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows), rows
    for row in rows:
        assert close_to(row["fields"]["color"], made[row["path"]]), row
    assert sum(fake.stats.answered_by_key.values()) == 8, "each image asked exactly once"
    terminal = done.stdout + done.stderr
    assert f"joined the Ray cluster at {two_nodes.address} (2 nodes); Ray's own log lines go to " \
           f"{out / 'ray.log'}" in terminal, terminal
    assert not [line for line in terminal.splitlines() if RAY_LINE.search(line)], terminal
    assert (out / "ray.log").is_file()


def test_a_sigterm_to_the_driver_leaves_the_cluster_running(tmp_path: Path, two_nodes: Cluster,
                                                            fake_anthropic_factory) -> None:
    """A cluster imgtag joined is someone else's: SIGTERM to imgtag's process group mid-run (a service manager
    stopping it) ends imgtag with its sentence and exit 143, and leaves every process of the cluster running; the
    same command then finishes on it."""
    make_images(tmp_path / "in", 16)
    fake = fake_anthropic_factory(latency_s=0.4)
    out = tmp_path / "out"
    # The cluster's daemons (its GCS and both raylets); workers of imgtag's job rightly end with the job.
    nodes = {pid for pid in _node_pids(two_nodes.marker)
             if any(name in Path(f"/proc/{pid}/cmdline").read_bytes() for name in (b"gcs_server", b"raylet/raylet"))}
    assert len(nodes) == 3, nodes
    args = [sys.executable, "-m", "imgtag", "run", str(tmp_path / "in"), "--out", str(out), "--engine", "ray",
            "--ray-address", two_nodes.address, "--concurrency", "2"]
    env = two_nodes.driver_env(token_mode=True, extra={"ANTHROPIC_BASE_URL": fake.base_url})
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while sum(fake.stats.answered_by_key.values()) < 2:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no answer came"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == ("imgtag: interrupted; everything answered so far is saved — run the "
                                            "same command to continue"), err
    assert sum(fake.stats.answered_by_key.values()) < 16, "the SIGTERM came after the run; the test proves nothing"
    assert not [pid for pid in nodes if not alive(pid)], "imgtag stopped processes of a cluster it did not start"
    done = _imgtag(args[3:], env)
    assert done.returncode == 0, done.stderr
    assert {r["status"] for r in read_jsonl(out / "results.jsonl")} == {"ok"}
