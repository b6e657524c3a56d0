"""Review while `imgtag run` writes the same store: the run holds the folder lock and writes answers, the
review writes only its own tables in short transactions; no edit and no answer is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from imagegen import make_images, run_cli
from reviewfix import by_seq, open_review


def test_edits_during_a_run_lose_nothing(tmp_path, fake_anthropic_factory, monkeypatch):
    made = tmp_path / "made"
    make_images(made, 26)
    first, later = tmp_path / "in" / "a", tmp_path / "in" / "b"
    first.mkdir(parents=True)
    later.mkdir(parents=True)
    for i, name in enumerate(sorted(os.listdir(made))):
        shutil.move(made / name, (first if i < 6 else later) / name)
    out = tmp_path / "out"
    fake = fake_anthropic_factory(respond=by_seq, latency_s=0.1)
    code, output = run_cli(["run", str(first), "--out", str(out), "-q", "--preset", "ecommerce"], fake.env(),
                           monkeypatch)
    assert code == 0, output

    env = {**os.environ, **fake.env()}
    run = subprocess.Popen([sys.executable, "-m", "imgtag", "run", str(tmp_path / "in"), "--out", str(out), "-q",
                            "--preset", "ecommerce", "--concurrency", "2"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store, review = open_review(out)
    ids = sorted(item["id"] for item in review.list({"status": "ok", "limit": 100})["items"])
    expected: dict[int, str] = {}
    bulk_changed = 0
    n = 0
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        target = ids[n % len(ids)]
        review.patch(target, {"fields": {"style": f"edit {n}"}, "reviewed": n % 2 == 0})
        expected[target] = f"edit {n}"
        bulk_changed += review.bulk({"op": "add_tag", "field": "tags", "tag": f"bulk{n % 3}", "filter": {}})["changed"]
        n += 1
        time.sleep(0.02)  # a fast person, not a tight loop: the run's writer gets its turns
    output = run.communicate(timeout=60)[0]
    assert run.returncode == 0, output
    assert n >= 5, "the run ended before the review wrote anything alongside it"

    # Every answer of the run is stored (26 images, each asked once and answered ok) ...
    jobs = store.db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
    assert [tuple(r) for r in jobs] == [("ok", 26)]
    assert store.db.execute("SELECT COUNT(*) FROM attempts WHERE outcome = 'ok'").fetchone()[0] == 26
    # ... and every edit: each write is a version, and each image's last edit is its current value.
    versions = store.db.execute("SELECT COUNT(*) FROM review_versions").fetchone()[0]
    singles = store.db.execute("SELECT COUNT(*) FROM review_ops WHERE kind = 'edit'").fetchone()[0]
    assert versions == singles + bulk_changed and singles == n
    for file_id, style in expected.items():
        assert review.item(file_id)["fields"]["style"] == style
    store.close()
    code, output = run_cli(["export", "--out", str(out), "--format", "jsonl"], {}, monkeypatch)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 26 and all(r["status"] == "ok" for r in rows)
    assert sum(1 for r in rows if "style" in r["edited_fields"]) == len(expected)
