"""The ingest writes a decoded file's rows in one transaction (row, duplicate links, near-duplicate index) and the
pending rows of a discovery chunk in one more, instead of a commit per statement: each commit writes every page it
touched to the WAL again, which was the largest share of the ingest's CPU in the main process."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from imagegen import make_images
from imgtag.ingest.pipeline import IngestOptions, Ingestor
from imgtag.ingest.preprocess import PrepareRequest
from imgtag.store import Store

WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)


def test_each_file_is_written_in_one_transaction(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 6)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    store = Store(tmp_path / "out")
    run_id = store.start_run("run")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    options = IngestOptions(inputs=[str(tmp_path / "in")], request=PrepareRequest("", encode=False), workers=1,
                            seen_run=run_id)
    ingestor = Ingestor(store, options, run_id=run_id)

    async def ingest() -> int:
        return len([item async for item in ingestor.run()])

    try:
        assert asyncio.run(ingest()) == 7
    finally:
        ingestor.close()
        store.db.set_trace_callback(None)
    inside, commits, outside = False, 0, []
    for sql in statements:
        word = sql.split(None, 1)[0].upper()
        if word == "BEGIN":
            inside = True
        elif word in ("COMMIT", "ROLLBACK"):
            inside, commits = False, commits + 1
        elif WRITE.match(sql) and not inside:
            outside.append(sql)
    # mark_seen at the end writes the unchanged files (none here) in one statement of its own, if at all.
    assert [s for s in outside if "last_run" not in s] == []
    assert commits == 7 + 1  # a transaction per file, one for the chunk's pending rows
    rows = store.db.execute("SELECT COUNT(*) FROM files WHERE reason_code IS NOT 'pending'").fetchone()[0]
    store.close()
    assert rows == 7
