"""The real LiteLLM proxy in front of the fake Anthropic server: a gateway that says "no" stops the run at once.

LiteLLM is large (it is not one of imgtag's dependencies), so it lives in its own virtual environment:
`.ci/litellm` installs it in CI and exports IMGTAG_LITELLM (the path of its `litellm` command); without it these
tests are skipped and say so. The fakes in tests/fakes copy the proxy's answers; these tests keep them honest.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes.anthropic_server import FakeAnthropicServer, FakeConfig

from imagegen import make_images, read_jsonl, run_cli

LITELLM = os.environ.get("IMGTAG_LITELLM") or shutil.which("litellm")
pytestmark = pytest.mark.skipif(not LITELLM, reason="LiteLLM's proxy is not installed (run .ci/litellm, or set "
                                                    "IMGTAG_LITELLM to its litellm command)")
MASTER_KEY = "sk-master-litellm-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """LiteLLM's proxy (no database, a master key) serving claude-haiku-5-5 from the fake Anthropic server."""
    fake = FakeAnthropicServer(FakeConfig()).start()
    folder = tmp_path_factory.mktemp("litellm")
    config = folder / "config.yaml"
    config.write_text(f"""model_list:
  - model_name: claude-haiku-5-5
    litellm_params:
      model: anthropic/claude-haiku-5-5
      api_base: {fake.base_url}
      api_key: {fake.config.api_key}
general_settings:
  master_key: {MASTER_KEY}
""")
    port = _free_port()
    log = (folder / "litellm.log").open("wb")
    server = subprocess.Popen([str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_DOCS": "True"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/health/liveliness", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"LiteLLM's proxy did not start: {(folder / 'litellm.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        fake.stop()


def _all_pending(out: Path) -> None:
    rows = read_jsonl(out / "results.jsonl")
    assert rows and {r["status"] for r in rows} == {"pending"}, rows


@pytest.mark.parametrize(("model", "key", "said"), [
    ("nope-model", MASTER_KEY, "Invalid model name passed in model=nope-model"),
    ("claude-haiku-5-5", "sk-not-the-master-key", "No connected db."),
])
def test_the_proxy_refusing_every_request_stops_the_run(proxy: str, model: str, key: str, said: str,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 12)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", model, "-q"],
                           {"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": proxy}, monkeypatch)
    assert code == 2, output
    assert said in output and "Traceback" not in output, output
    _all_pending(out)


def test_batch_mode_through_the_proxy_says_it_has_no_message_batches(proxy: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--mode", "batch", "-q"],
                           {"ANTHROPIC_API_KEY": MASTER_KEY, "ANTHROPIC_BASE_URL": proxy}, monkeypatch)
    assert code == 2, output
    assert "this server has no Message Batches API; run without --mode batch" in output, output
    assert not (out / "imgtag.db").exists()
