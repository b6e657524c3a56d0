"""A store filled with synthetic rows, fast: what the index-plan, export-memory and scale tests (and
bench/store_scale.py) need of a large folder without decoding or asking anything.

The rows have the shape real runs write (one file row, one answered job and one attempt per image; a few
failures, skips, exact copies and review edits), written by executemany in one transaction into a store
imgtag itself created, so the schema and its migrations are the product's.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from imgtag.export import fileset, targets
from imgtag.presets import load_preset
from imgtag.store import Store
from imgtag.store.db import now_iso

MODEL, PROVIDER = "claude-haiku-5-5", "anthropic"
CHUNK = 20_000


def target_meta() -> dict:
    preset = load_preset("ecommerce")
    return {"preset": "ecommerce", "preset_name": preset.name, "preset_version": preset.version, "lang": None,
            "categories": None, "provider": PROVIDER, "model": MODEL, "mode": "sync", "formats": "csv,jsonl",
            "fields": preset.fields, "list_fields": preset.list_fields, "schema": preset.schema}


def fill(out: Path, n: int, *, root: str = "/photos", seed: int = 7) -> dict:
    """Write `n` images' rows into a new store at `out`; returns the target's meta record."""
    rng = random.Random(seed)
    vocab = [f"tag{i}" for i in range(400)]
    meta = target_meta()
    key = (meta["preset_version"], PROVIDER, MODEL)
    at = now_iso()
    with Store(out) as store:
        targets.record(store, meta)
        run_id = store.start_run("run", preset="ecommerce")
        fileset.begin(store, run_id)
        store.set_meta(fileset.BASE_KEY, root)
        with store.db:
            store.db.execute("BEGIN")
            job_id = 0
            for start in range(0, n, CHUNK):
                files, jobs, attempts, reviews = [], [], [], []
                for i in range(start, min(n, start + CHUNK)):
                    name = f"shard{i // 10_000:03d}/img_{i:07d}.jpg"
                    # File i gets id i + 1 (a new store). 1 in 100 is an exact copy of the image before it (shares
                    # its job), 1 in 200 was skipped (too small).
                    copy = i % 100 == 99
                    sha = hashlib.sha256(str(i - 1 if copy else i).encode()).hexdigest()
                    skipped = i % 200 == 7
                    files.append((f"{root}/{name}".encode(), name, root, 100_000 + i, 1_700_000_000_000_000_000 + i,
                                  sha, "skipped" if skipped else "ok", "too_small" if skipped else None,
                                  "smaller than 64 px" if skipped else None, "jpeg", 1600, 1200,
                                  f"{rng.getrandbits(64):016x}", rng.random() * 300, 896, 672, 768,
                                  i if copy else None, run_id, run_id))
                    if copy or skipped:
                        continue
                    job_id += 1
                    failed = i % 100 == 42
                    fields = {"tags": ["t-shirt", *rng.sample(vocab, rng.randint(2, 4))],
                              "category": rng.choice(["上衣", "裤子", "裙子", "鞋"]),
                              "description": f"Plain cotton shirt, product number {i}.",
                              "color": rng.choice(["red", "blue", "black"]), "style": "casual"}
                    jobs.append((job_id, sha, *key, "failed" if failed else "ok", i + 1,
                                 None if failed else json.dumps(fields, ensure_ascii=False),
                                 "invalid_answer" if failed else None, "the answer missed 'style'" if failed else None,
                                 1900, 120, 0, 1500, 0.0012, "sync", f"req_{i:012d}", at))
                    attempts.append((job_id, run_id, at, at, "invalid" if failed else "ok", 200, f"req_{i:012d}",
                                     1900, 120, 0, 1500, 0.0012, "sync",
                                     '{"category": "tops"}' if failed else None))
                    if i % 100 == 5:
                        reviews.append((i + 1, *key, json.dumps({"color": "green"}), 1, 1, at))
                store.db.executemany(
                    "INSERT INTO files(path, display, root, size, mtime_ns, sha256, status, reason_code, reason,"
                    " format, width, height, phash, blur, out_width, out_height, visual_tokens, duplicate_of,"
                    " last_run, seen_run) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", files)
                store.db.executemany(
                    "INSERT INTO jobs(id, sha256, preset_version, provider, model, status, file_id, fields, error_type,"
                    " error_message, input_tokens, output_tokens, cache_creation_input_tokens,"
                    " cache_read_input_tokens, cost_usd, mode, request_id, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", jobs)
                store.db.executemany(
                    "INSERT INTO attempts(job_id, run_id, started_at, finished_at, outcome, http_status, request_id,"
                    " input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd,"
                    " mode, raw_answer) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", attempts)
                store.db.executemany(
                    "INSERT INTO review_state(file_id, preset_version, provider, model, edits, reviewed, version,"
                    " updated_at) VALUES (?,?,?,?,?,?,?,?)", reviews)
        fileset.record_count(store, run_id, n)
        store.finish_run(run_id, 0)
    return meta
