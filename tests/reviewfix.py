"""A tagged folder for the review tests: images run through the real CLI against the fake Anthropic server, then
the target's Review (the service the API routes call) over the store without the folder lock."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagegen import make_images, run_cli
from imgtag.review.service import Review
from imgtag.store import Store


def answer(n: int) -> dict[str, Any]:
    """The fake model's n-th answer (ecommerce preset): every image has 't-shirt'; odd ones 'cotton' too."""
    tags = ["t-shirt", f"tag{n}"] + (["cotton"] if n % 2 else [])
    return {"tags": tags, "category": "上衣", "description": f"shirt number {n}", "color": "red", "style": "casual"}


def by_seq(ctx: dict[str, Any]) -> dict[str, Any]:
    return {"text": json.dumps(answer(ctx["seq"]), ensure_ascii=False)}


def tagged_folder(tmp_path: Path, fake_factory: Any, monkeypatch: Any, n: int = 6,
                  respond: Callable[[dict[str, Any]], Any] = by_seq) -> tuple[Path, Path, list[str]]:
    images = tmp_path / "in"
    make_images(images, n)
    fake = fake_factory(respond=respond)
    out = tmp_path / "out"
    args = ["run", str(images), "--out", str(out), "-q", "--preset", "ecommerce"]
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    return images, out, args


def open_review(out: Path) -> tuple[Store, Review]:
    store = Store(out, lock=False, create=False)
    return store, Review(store.db, store.get_meta("target"))


class ReviewServer:
    """`imgtag review --no-browser --port 0` in its own process: the address it printed, and plain HTTP to it."""

    def __init__(self, out: Path, *extra: str) -> None:
        import os
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "imgtag", "review", "--out", str(out), "--no-browser",
                                      "--port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "COLUMNS": "80"})
        assert self.proc.stdout is not None
        self.first_line = self.proc.stdout.readline().strip()
        assert self.first_line.startswith("http://"), self.first_line + (self.proc.stderr.read() if
                                                                          self.proc.poll() is not None else "")
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(self.first_line)
        self.url = self.first_line
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.hostname or ""
        self.port = parts.port or 80
        self.netloc = parts.netloc
        self.token = parse_qs(parts.query)["token"][0]
        assert self.request("GET", "/api/target")[0] == 200  # serving (a person opens it after reading the line)

    def request(self, method: str, path: str, body: Any = None, *, token: bool = True,
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        import http.client

        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        sent = {"Host": self.netloc}
        if token:
            sent["Authorization"] = f"Bearer {self.token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in sent.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(data or b"")))
        conn.endheaders(data)
        response = conn.getresponse()
        payload = response.read()
        result = response.status, {k.lower(): v for k, v in response.getheaders()}, payload
        conn.close()
        return result

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, _, payload = self.request(method, path, body)
        assert status == 200, (status, payload)
        return json.loads(payload)

    def stop(self) -> tuple[int, str, str]:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err
