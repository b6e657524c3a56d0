"""The results contract (README "Results contract"): unambiguous paths, one row shape per status, one JSON
type per key, readable by DuckDB at any size (issue 9 items 1, 3, 4)."""

from __future__ import annotations

import json

import duckdb

from imagegen import close_to, make_images, read_jsonl, run_cli
from imgtag.export.results import write_jsonl
from imgtag.export.rows import ExportContext
from imgtag.pricing.costs import Usage
from imgtag.store import FileRecord, Store, WorkKey

KEY = WorkKey("v1", "anthropic", "claude-haiku-5-5")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object:" + ",".join(sorted(value))  # an object's keys are part of its type


def _mixed_store(tmp_path, pending_first: int = 0):
    """Every row kind: ok, duplicate, failed, skipped, unreadable, pending (asked and not), not examined."""
    store = Store(tmp_path / "out")
    run = store.start_run("run", key=KEY)
    n = 0

    def add(status: str = "ok", sha: str | None = None, **kw: object) -> int:
        nonlocal n
        n += 1
        return store.upsert_file(FileRecord(path=str(tmp_path / f"f{n}.jpg"), display=f"f{n}.jpg", root=None,
                                            size=1, mtime_ns=1, status=status, sha256=sha, **kw), run)

    for i in range(pending_first):  # found and hashed, never asked: the shape a budget stop leaves
        add(sha=f"p{i}")
    ok = add(sha="s-ok")
    store.link_duplicates("s-ok")
    job = store.job_for("s-ok", KEY, ok)
    store.record_attempt(job.id, run, started_at="t", outcome="ok", mode="sync", usage=Usage(100, 20), cost=0.0003,
                         commit_job={"status": "ok", "mode": "sync", "fields": {"tags": ["a"], "n": 1}})
    add(sha="s-ok")
    store.link_duplicates("s-ok")
    bad = add(sha="s-bad")
    job = store.job_for("s-bad", KEY, bad)
    store.record_attempt(job.id, run, started_at="t", outcome="failed", mode="sync", usage=Usage(90, 5), cost=0.0001,
                         error_type="refused", error_message="no", raw_answer='{"tags": 3}',
                         commit_job={"status": "failed", "mode": "sync", "error_type": "refused",
                                     "error_message": "no"})
    add(status="skipped", sha="s-small", reason_code="too_small", reason="short side 20 px")
    add(status="failed", reason_code="corrupt", reason="corrupt: bad header")
    retried = add(sha="s-retry")  # a transient failure was paid for, then the run stopped
    job = store.job_for("s-retry", KEY, retried)
    store.record_attempt(job.id, run, started_at="t", outcome="retry", mode="sync", error_type="overloaded_error",
                         error_message="529")
    add(sha="s-never")
    store.reserve_file(str(tmp_path / "zz-not-examined.jpg"), "zz-not-examined.jpg", None)
    return store


def test_one_row_shape_per_status_and_not_examined_files_are_pending(tmp_path):
    with _mixed_store(tmp_path) as store:
        rows = list(store.result_rows(KEY, "ecommerce"))
    by_path = {r.path: r for r in rows}
    examined_later = by_path["zz-not-examined.jpg"]
    assert examined_later.status == "pending" and examined_later.error is None
    shapes: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for row in rows:
        record = json.loads(json.dumps(row.__dict__))
        for key in ("path", "fields"):  # content varies by preset; checked by DuckDB below
            record.pop(key)
        for key in ("sha256", "duplicate_of", "mode"):  # documented as "string or null"
            assert _json_type(record.pop(key)) in ("string", "null"), (row, key)
        shapes.setdefault(row.status, set()).add(tuple((k, _json_type(v)) for k, v in sorted(record.items())))
    assert set(shapes) == {"ok", "failed", "skipped", "pending"}
    for status, found in shapes.items():
        assert len(found) == 1, (status, found)
    # usage and cost are always present with one type, so a reader never meets null, {} and an object
    usage_types = {_json_type(r.usage) for r in rows}
    assert usage_types == {"object:cache_creation_input_tokens,cache_read_input_tokens,input_tokens,output_tokens"}
    assert {type(r.cost_usd) for r in rows} == {float}


def test_duckdb_reads_every_key_with_one_type_however_the_rows_start(tmp_path):
    with _mixed_store(tmp_path, pending_first=300) as store:
        write_jsonl(store.result_rows(KEY, "ecommerce", ["tags", "n", "note"]),
                    ExportContext(out_dir=store.out_dir, field_names=["tags", "n", "note"], list_fields={"tags"}))
    path = store.out_dir / "results.jsonl"
    con = duckdb.connect()
    # DuckDB infers types from a sample, as it must for a 25k-row file; here the first 300 rows are all pending,
    # yet usage and cost keep their types (a null usage in pending rows used to turn the column into NULL).
    total, ok_in, paid, cost = con.execute(
        "SELECT count(*), sum(usage.input_tokens) FILTER (WHERE status = 'ok'), sum(usage.input_tokens),"
        f" sum(cost_usd) FROM read_json_auto('{path}', sample_size=50)").fetchone()
    assert (total, ok_in, paid) == (308, 100, 190)
    assert abs(cost - 0.0004) < 1e-9
    kinds = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM read_json_auto('{path}')").fetchall()}
    assert kinds["cost_usd"] == "DOUBLE"
    assert kinds["usage"].startswith("STRUCT(input_tokens BIGINT")
    # raw_answer: string or null (a paid answer that failed validation, kept)
    assert kinds["error"] == 'STRUCT("type" VARCHAR, message VARCHAR, raw_answer VARCHAR)'
    assert kinds["fields"] == "STRUCT(tags VARCHAR[], n BIGINT, note \"NULL\")"  # every ok row has all 3 keys
    errors = con.execute(f"SELECT list(error.type ORDER BY error.type) FROM read_json_auto('{path}')"
                         " WHERE error IS NOT NULL").fetchone()[0]
    assert errors == ["corrupt", "refused", "too_small"]
    kept = con.execute(f"SELECT list(error.raw_answer) FROM read_json_auto('{path}')"
                       " WHERE error.raw_answer IS NOT NULL")
    assert kept.fetchone()[0] == ['{"tags": 3}']


def test_two_inputs_with_the_same_names_get_distinct_stable_paths(tmp_path, fake_anthropic, monkeypatch):
    made_a = make_images(tmp_path / "shopA", 2)
    made_b = make_images(tmp_path / "shopB", 5)  # same names img_0000/img_0001, other colours below
    for name in made_a:
        (tmp_path / "shopB" / name).unlink()
    (tmp_path / "shopB" / "img_0002.jpg").rename(tmp_path / "shopB" / "img_0000.jpg")
    (tmp_path / "shopB" / "img_0003.jpg").rename(tmp_path / "shopB" / "img_0001.jpg")
    monkeypatch.chdir(tmp_path)
    paths = []
    for _ in range(2):
        code, output = run_cli(["run", "shopA", "./shopB/", "--out", "o", "-q"], fake_anthropic.env(), monkeypatch)
        assert code == 0, output
        rows = read_jsonl(tmp_path / "o" / "results.jsonl")
        paths.append([r["path"] for r in rows])
    assert paths[0] == paths[1]
    assert sorted(paths[0]) == ["shopA/img_0000.jpg", "shopA/img_0001.jpg", "shopB/img_0000.jpg",
                                "shopB/img_0001.jpg", "shopB/img_0004.jpg"]
    by_path = {r["path"]: r for r in rows}
    assert close_to(by_path["shopA/img_0000.jpg"]["fields"]["color"], made_a["img_0000.jpg"])
    assert close_to(by_path["shopB/img_0000.jpg"]["fields"]["color"], made_b["img_0002.jpg"])
    csv_paths = [line.split(",")[0] for line in (tmp_path / "o" / "results.csv").read_text("utf-8-sig").splitlines()]
    assert len(set(csv_paths[1:])) == 5
    # one folder on its own keeps paths relative to it
    code, output = run_cli(["run", "shopA", "--out", "o2", "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    assert [r["path"] for r in read_jsonl(tmp_path / "o2" / "results.jsonl")] == ["img_0000.jpg", "img_0001.jpg"]
