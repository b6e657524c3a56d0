"""`imgtag review` at scale: a store of 100,000 synthetic images served by the real `imgtag review` process.

    python bench/review_scale.py [--images 100000] [--baseline 1000]

Measured over HTTP, as the page asks: the first page (60 items), filters (a tag, free text, not reviewed), the
tag panel, a bulk rename of a tag every image has (dry run, then applied) and its undo; then the server's peak
resident memory (VmHWM). Each as wall time and as the server's CPU time (which a busy machine does not inflate).
Baseline, in this script: the same requests against a store of 1,000 images, so the ratios show how each cost
grows with the store. Targets (issue 18): first page and a filter under 1 s, bulk
rename and undo under 10 s each, server RSS under 300 MB.

Rows are synthetic: files and answered jobs written straight into a store made by imgtag itself (ecommerce
preset: 3 to 5 tags each from a vocabulary of 400, and every image has "t-shirt"). Figures are the best of 3
(a bulk operation once each way).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imgtag.export import targets  # noqa: E402
from imgtag.presets import load_preset  # noqa: E402
from imgtag.store import Store  # noqa: E402
from imgtag.store.db import now_iso  # noqa: E402

MODEL, PROVIDER = "claude-haiku-5-5", "anthropic"


def make_store(out: Path, n: int) -> None:
    preset = load_preset("ecommerce")
    rng = random.Random(7)
    vocab = [f"tag{i}" for i in range(400)]
    at = now_iso()
    with Store(out) as store:
        meta = {"preset": "ecommerce", "preset_name": preset.name, "preset_version": preset.version, "lang": None,
                "categories": None, "provider": PROVIDER, "model": MODEL, "mode": "sync", "formats": "csv,jsonl",
                "fields": preset.fields, "list_fields": preset.list_fields, "schema": preset.schema}
        targets.record(store, meta)
        with store.db:
            store.db.execute("BEGIN")
            for start in range(0, n, 10_000):
                files, jobs = [], []
                for i in range(start, min(n, start + 10_000)):
                    sha = hashlib.sha256(str(i).encode()).hexdigest()
                    files.append((f"/photos/img_{i:06d}.jpg".encode(), f"img_{i:06d}.jpg", sha))
                    fields = {"tags": ["t-shirt", *rng.sample(vocab, rng.randint(2, 4))],
                              "category": rng.choice(["上衣", "裤子", "裙子", "鞋"]),
                              "description": f"product number {i}", "color": rng.choice(["red", "blue", "black"]),
                              "style": "casual"}
                    jobs.append((sha, preset.version, PROVIDER, MODEL, json.dumps(fields, ensure_ascii=False), at))
                store.db.executemany("INSERT INTO files(path, display, sha256, status) VALUES (?,?,?,'ok')", files)
                store.db.executemany(
                    "INSERT INTO jobs(sha256, preset_version, provider, model, status, fields, mode, updated_at)"
                    " VALUES (?,?,?,?,'ok',?,'sync',?)", jobs)


class Server:
    def __init__(self, out: Path) -> None:
        script = Path(sys.executable).with_name("imgtag")
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "imgtag"]
        self.proc = subprocess.Popen([*cmd, "review", "--out", str(out), "--no-browser", "--port", "0"],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        url = urlsplit(self.proc.stdout.readline().strip())
        self.host, self.port, self.netloc = url.hostname or "", url.port or 80, url.netloc
        self.token = url.query.split("token=", 1)[1]

    def call(self, method: str, path: str, body: object = None) -> tuple[float, dict]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        headers = {"Authorization": f"Bearer {self.token}", "Host": self.netloc}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        payload = json.loads(response.read())
        took = time.perf_counter() - started
        conn.close()
        assert response.status == 200, payload
        return took, payload

    def cpu(self) -> float:
        """The server's CPU seconds so far (user + system): unlike wall time, not inflated by a busy machine."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def timed(self, method: str, path: str, body: object = None) -> tuple[float, float, dict]:
        before = self.cpu()
        wall, payload = self.call(method, path, body)
        return wall, self.cpu() - before, payload

    def best(self, path: str, runs: int = 3) -> tuple[float, float]:
        results = [self.timed("GET", path)[:2] for _ in range(runs)]
        return min(w for w, _ in results), min(c for _, c in results)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(2)
        self.proc.communicate(timeout=30)


def measure(n: int) -> dict[str, tuple[float, float]]:
    folder = Path(tempfile.mkdtemp(prefix="imgtag-review-bench-"))
    try:
        started = time.perf_counter()
        make_store(folder / "out", n)
        built = time.perf_counter() - started
        server = Server(folder / "out")
        try:
            fig: dict[str, tuple[float, float]] = {
                "first page": server.best("/api/images?offset=0&limit=60"),
                "tag filter": server.best("/api/images?limit=60&tag=tag17"),
                "text filter": server.best("/api/images?limit=60&q=" + quote("number 4242")),
                "not reviewed": server.best("/api/images?limit=60&reviewed=false&status=ok"),
                "tags panel": server.best("/api/tags")}
            op = {"op": "rename_tag", "field": "tags", "from": "t-shirt", "to": "T恤", "filter": {}}
            wall, cpu, preview = server.timed("POST", "/api/bulk", {**op, "dry_run": True})
            fig["bulk preview"] = (wall, cpu)
            wall, cpu, done = server.timed("POST", "/api/bulk", op)
            fig["bulk rename"] = (wall, cpu)
            assert preview["changed"] == done["changed"] == n, (preview, done)
            fig["renamed filter"] = server.best("/api/images?limit=60&tag=" + quote("T恤"))
            wall, cpu, undone = server.timed("POST", "/api/undo", {"undo_id": done["undo_id"]})
            fig["undo"] = (wall, cpu)
            assert undone["changed"] == n, undone
            fig["server RSS MB"] = (server.peak_rss_mb(), float("nan"))
            fig["store built s"] = (built, float("nan"))
        finally:
            server.stop()
        return fig
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    args = parser.parse_args()
    base = measure(args.baseline)
    big = measure(args.images)
    print(f"{'':16}{'wall s':>10}{'wall s':>10}{'ratio':>8}{'server CPU s':>14}")
    print(f"{'':16}{args.baseline:>10,}{args.images:>10,}{'':>8}{args.images:>14,}")
    for name, (wall, cpu) in big.items():
        ratio = wall / base[name][0] if base[name][0] else float("nan")
        print(f"{name:16}{base[name][0]:>10.3f}{wall:>10.3f}{ratio:>7.1f}x{cpu:>14.2f}")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

if __name__ == "__main__":
    main()
