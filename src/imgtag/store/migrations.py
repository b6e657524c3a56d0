"""Schema migrations. Each entry upgrades the database by one version (PRAGMA user_version).

Append only: never edit a migration that has shipped; add a new one instead.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from imgtag.store.near import index_row

Migration = Callable[[sqlite3.Connection], None]


def _v1_initial(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        -- One row per imgtag invocation that touched this store.
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            command TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            provider TEXT, model TEXT, preset TEXT, preset_version TEXT, mode TEXT,
            exit_code INTEGER,
            pid INTEGER NOT NULL
        );

        -- Every file discovered, keyed by its filesystem path (bytes, so non-UTF-8 names round-trip).
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            path BLOB NOT NULL UNIQUE,
            display TEXT NOT NULL,
            root TEXT,
            size INTEGER, mtime_ns INTEGER,
            sha256 TEXT,
            status TEXT NOT NULL CHECK (status IN ('ok', 'skipped', 'failed')),
            reason_code TEXT, reason TEXT,
            format TEXT, width INTEGER, height INTEGER,
            phash TEXT, blur REAL,
            out_width INTEGER, out_height INTEGER, visual_tokens INTEGER,
            duplicate_of INTEGER REFERENCES files(id),
            near_duplicate_of INTEGER REFERENCES files(id),
            last_run INTEGER REFERENCES runs(id)
        );
        CREATE INDEX files_sha ON files(sha256);

        -- Units of paid work: one per (content, preset version, provider, model). Identical images share one.
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL,
            preset_version TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'ok', 'failed', 'batched')),
            file_id INTEGER REFERENCES files(id),
            attempts INTEGER NOT NULL DEFAULT 0,
            fields TEXT,
            error_type TEXT, error_message TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_input_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            mode TEXT,
            request_id TEXT,
            updated_at TEXT NOT NULL,
            UNIQUE (sha256, preset_version, provider, model)
        );
        CREATE INDEX jobs_status ON jobs(status);

        -- Every request we made (or a batch item's outcome), with its cause when it failed.
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            run_id INTEGER REFERENCES runs(id),
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            outcome TEXT NOT NULL,
            http_status INTEGER,
            error_type TEXT, error_message TEXT,
            request_id TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_input_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            mode TEXT NOT NULL,
            batch_id TEXT
        );
        CREATE INDEX attempts_job ON attempts(job_id);

        -- Message Batches: the id is committed before anything else happens to a batch.
        CREATE TABLE batches (
            id TEXT PRIMARY KEY,
            provider TEXT NOT NULL, model TEXT NOT NULL,
            run_id INTEGER REFERENCES runs(id),
            created_at TEXT NOT NULL,
            processing_status TEXT NOT NULL,
            request_counts TEXT,
            item_count INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            ended_at TEXT,
            collected_at TEXT
        );
        CREATE TABLE batch_items (
            custom_id TEXT PRIMARY KEY,
            batch_id TEXT REFERENCES batches(id),
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            state TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX batch_items_batch ON batch_items(batch_id);
        CREATE INDEX batch_items_job ON batch_items(job_id);
        -- A submission written before the create call, so a crash between "created" and "id stored"
        -- can be reconciled by listing the account's batches instead of paying twice.
        CREATE TABLE batch_submissions (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            item_count INTEGER NOT NULL,
            batch_id TEXT
        );
        """
    )


def _v2_credits(db: sqlite3.Connection) -> None:
    """Credit-billed providers (the imagedescriber tag API): what each call charged and the balance after it.
    NULL for providers that bill in tokens and dollars."""
    db.execute("ALTER TABLE attempts ADD COLUMN credits_amount REAL")
    db.execute("ALTER TABLE attempts ADD COLUMN credits_remaining REAL")


def _v3_export_ledger(db: sqlite3.Connection) -> None:
    # Files imgtag wrote beside the originals (captions, JSON sidecars, metadata.jsonl): the hash of what
    # we wrote tells our own file (rewrite it) from a user's (never clobber it), and `kept` holds the
    # user's own text an append/prepend was merged with, so re-exporting gives the same bytes.
    db.executescript(
        """
        CREATE TABLE export_files (
            path BLOB PRIMARY KEY,
            format TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            kept TEXT,
            how TEXT
        );
        """
    )


def _v4_server_caps(db: sqlite3.Connection) -> None:
    # What an OpenAI-compatible server accepted (structured-output mode, temperature), so a rerun does not
    # probe again. Keyed by base URL and model: one store may talk to several servers over its life.
    # One statement, not executescript (which would commit the migration's transaction half way).
    db.execute(
        """
        CREATE TABLE server_caps (
            base_url TEXT NOT NULL,
            model TEXT NOT NULL,
            caps TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (base_url, model)
        )
        """
    )


def _v5_learned_limits(db: sqlite3.Connection) -> None:
    # Rate limits a provider advertised, per account (a salted hash of the API key, never the key), so the
    # next run starts at the known pace and uses the known burst instead of probing from cold.
    db.execute(
        """CREATE TABLE learned_limits (
            provider TEXT NOT NULL,
            key_fingerprint TEXT NOT NULL,
            limits TEXT NOT NULL,          -- JSON: per dimension {per_minute, capacity}
            updated_at TEXT NOT NULL,
            PRIMARY KEY (provider, key_fingerprint)
        )"""
    )


def _v6_run_end_state(db: sqlite3.Connection) -> None:
    # How a run ended: finished, interrupted (SIGINT/SIGTERM) or killed (found unfinished, its process gone).
    db.execute("ALTER TABLE runs ADD COLUMN end_state TEXT")


def _v7_ray_shards(db: sqlite3.Connection) -> None:
    # --engine ray: result shards already applied to this store, so applying one twice changes nothing.
    db.execute("CREATE TABLE ray_shards (name TEXT PRIMARY KEY, rows INTEGER NOT NULL, ingested_at TEXT NOT NULL)")


def _v8_xmp(db: sqlite3.Connection) -> None:
    # XMP written beside (sidecar) or into (embedded) an image: the bag items imgtag added, so a
    # re-export replaces them instead of piling up, and the outcome of the last attempt per file.
    # execute, not executescript: executescript would commit migrate()'s transaction first.
    db.execute(
        """
        CREATE TABLE xmp_written (
            target BLOB NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('sidecar', 'embedded')),
            source BLOB,
            owned TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
            error TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (target, kind)
        )
        """
    )


def _v9_batch_packs(db: sqlite3.Connection) -> None:
    # --images-per-request K in batch mode: one batch request carries up to K images. batch_items stays one
    # row per image; request_cid is the custom_id the API knows its request by (the first member's own), and
    # position is the image's place in it ("Image 1" is 0), which says which answer of the pack is its own.
    db.execute("ALTER TABLE batch_items ADD COLUMN request_cid TEXT")
    db.execute("ALTER TABLE batch_items ADD COLUMN position INTEGER NOT NULL DEFAULT 0")
    db.execute("UPDATE batch_items SET request_cid = custom_id")
    db.execute("CREATE INDEX batch_items_request ON batch_items(request_cid)")


def _v10_review(db: sqlite3.Connection) -> None:
    # `imgtag review`: a person's edits and approvals, kept apart from the model's answer (jobs.fields), which
    # is never overwritten by a person. A field's current value is the latest human one, else the model's.
    # The review server writes only these tables (short WAL transactions, no folder lock), so it can run
    # while `imgtag run` writes jobs and files. One statement per execute (executescript would commit).
    key = "preset_version TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL"
    # The current state per image and target: edits {field: value}, reviewed 1 approved / -1 rejected / 0.
    db.execute(f"""CREATE TABLE review_state (
            file_id INTEGER NOT NULL REFERENCES files(id), {key},
            edits TEXT NOT NULL DEFAULT '{{}}',
            reviewed INTEGER NOT NULL DEFAULT 0,
            version INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (file_id, preset_version, provider, model))""")
    db.execute("CREATE INDEX review_state_reviewed ON review_state(reviewed)")
    # Every write of a person, single or bulk: what undo reverts as one step.
    db.execute(f"""CREATE TABLE review_ops (
            id INTEGER PRIMARY KEY, {key},
            kind TEXT NOT NULL,            -- edit | bulk | restore | undo
            op TEXT NOT NULL,              -- JSON: the request
            changed INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            undone_at TEXT)""")
    # Append-only history: each image's state after each write, and the state before it (what undo restores).
    db.execute(f"""CREATE TABLE review_versions (
            id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL, {key},
            version INTEGER NOT NULL,
            op_id INTEGER NOT NULL REFERENCES review_ops(id),
            edits TEXT NOT NULL, reviewed INTEGER NOT NULL,
            before_edits TEXT NOT NULL, before_reviewed INTEGER NOT NULL,
            created_at TEXT NOT NULL)""")
    db.execute("CREATE INDEX review_versions_file ON review_versions(file_id, id)")
    db.execute("CREATE INDEX review_versions_op ON review_versions(op_id)")
    # A model answer replaced by a new ask of the same job (a queued retry): kept, so history shows every
    # answer and nothing paid for is lost. Written by the run's writer when it settles the job.
    db.execute("""CREATE TABLE answer_history (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            fields TEXT NOT NULL,
            answered_at TEXT NOT NULL,
            replaced_at TEXT NOT NULL)""")
    db.execute("CREATE INDEX answer_history_job ON answer_history(job_id)")
    # "Retry this image" from the review page: `imgtag retry` asks these again (the page itself never pays).
    db.execute(f"""CREATE TABLE review_retry (
            file_id INTEGER NOT NULL, {key},
            queued_at TEXT NOT NULL,
            PRIMARY KEY (file_id, preset_version, provider, model))""")


def _v11_files_seen_run(db: sqlite3.Connection) -> None:
    # The latest real `run`/`retry` whose inputs held this file (dry runs and scans never set it): results.* and
    # `status` cover the files seen by the latest run (meta `file_set`), see fileset.py. Older rows take the run
    # that last touched them.
    db.execute("ALTER TABLE files ADD COLUMN seen_run INTEGER")
    db.execute("UPDATE files SET seen_run = last_run")
    db.execute("CREATE INDEX files_seen_run ON files(seen_run)")


def _v12_raw_answers(db: sqlite3.Connection) -> None:
    # A paid answer that failed validation (or was cut off) keeps its text on its attempt, so a user can recover it
    # from `status` or the results without paying for it again. NULL for every other attempt.
    db.execute("ALTER TABLE attempts ADD COLUMN raw_answer TEXT")


def _v13_cost_unknown(db: sqlite3.Connection) -> None:
    # Tokens paid at prices nobody knows (a model outside the catalogue with no imgtag.toml or --price-in prices):
    # cost_usd holds 0 for them and cost_unknown counts them, so a sum is unknown as soon as one of them is in it.
    # Before this version such answers were stored at $0: one with tokens, no cost and no credits (a credit-billed
    # provider's answers carry no tokens) is read as unknown. (A model declared free then reads as unknown too.)
    for table in ("attempts", "jobs"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN cost_unknown INTEGER NOT NULL DEFAULT 0")
    db.execute("UPDATE attempts SET cost_unknown = 1 WHERE cost_usd = 0 AND credits_amount IS NULL AND"
               " input_tokens + output_tokens + cache_creation_input_tokens + cache_read_input_tokens > 0")
    db.execute("UPDATE jobs SET cost_unknown = (SELECT COUNT(*) FROM attempts a WHERE a.job_id = jobs.id"
               " AND a.cost_unknown = 1) WHERE id IN (SELECT job_id FROM attempts WHERE cost_unknown = 1)")


def _v15_scale_indexes(db: sqlite3.Connection) -> None:
    # A store of a million images (issue 20.3): `status`, the run summary, retry and review count their rows from
    # narrow covering indexes instead of reading the wide rows (a job's fields, a file's every column), and join
    # files to jobs in content order. tests/test_query_plans.py runs EXPLAIN QUERY PLAN on the hot statements.
    # IF (NOT) EXISTS: indexes only, so running it again (a store set back to an older version) changes nothing.
    # A file's content and status, with its file-set and run membership and its size (the estimate `status` shows):
    # the join from a target's jobs to the files holding their content never reads a files row. Replaces files_sha
    # (its prefix).
    db.execute("CREATE INDEX IF NOT EXISTS files_content ON files(sha256, status, seen_run, last_run, width, height)")
    db.execute("DROP INDEX IF EXISTS files_sha")
    # The file set (`status`, results) and one run's files (the end-of-run summary) counted by status and cause in
    # index order (no sort of a million rows); the set's bound (seen_run >= the set's run) is a range, so it comes
    # last. Failed files (status's list) are a seek too.
    db.execute("CREATE INDEX IF NOT EXISTS files_set ON files(status, reason_code, seen_run)")
    db.execute("CREATE INDEX IF NOT EXISTS files_run ON files(last_run, status, reason_code)")
    # A target's jobs by status, in content order (status, retry's failures, review counts), without their fields.
    db.execute("CREATE INDEX IF NOT EXISTS jobs_target ON jobs(preset_version, provider, model, status, sha256,"
               " error_type)")
    # The review list's near-duplicate filter asks, for each image, whether another points at it.
    db.execute("CREATE INDEX IF NOT EXISTS files_duplicate_of ON files(duplicate_of) WHERE duplicate_of IS NOT NULL")
    db.execute("CREATE INDEX IF NOT EXISTS files_near_duplicate_of ON files(near_duplicate_of)"
               " WHERE near_duplicate_of IS NOT NULL")
    # A credit-billed provider's latest balance (`status`, the run summary): only its attempts are in this index.
    db.execute("CREATE INDEX IF NOT EXISTS attempts_credits ON attempts(run_id, credits_remaining)"
               " WHERE credits_remaining IS NOT NULL")


def _v16_rerun_state(db: sqlite3.Connection) -> None:
    # What a rerun of an unchanged folder needs so that it reads in bulk and writes nothing per file (issue 20.1).
    # near_index: the near-duplicate index (store/near.py), kept between runs and only added to: one row per file
    # that can be a near-duplicate's original (ok, not a byte copy), its 64-bit perceptual hash (signed, as SQLite
    # integers are) and the hash's four 16-bit bands, each indexed, so a lookup probes bands instead of every hash.
    db.execute("CREATE TABLE near_index (file_id INTEGER PRIMARY KEY REFERENCES files(id) ON DELETE CASCADE,"
               " phash INTEGER NOT NULL, b0 INTEGER NOT NULL, b1 INTEGER NOT NULL, b2 INTEGER NOT NULL,"
               " b3 INTEGER NOT NULL)")
    for band in range(4):
        db.execute(f"CREATE INDEX near_index_b{band} ON near_index(b{band})")
    rows = db.execute("SELECT id, phash FROM files WHERE status = 'ok' AND duplicate_of IS NULL"
                      " AND phash IS NOT NULL").fetchall()
    db.executemany("INSERT INTO near_index(file_id, phash, b0, b1, b2, b3) VALUES (?,?,?,?,?,?)",
                   [index_row(file_id, phash) for file_id, phash in rows])
    # result_changes: a counter that moves whenever anything results.* show may have changed (triggers below), so
    # a rerun that changed nothing leaves results.csv/.jsonl as they are (export/unchanged.py). A file row's
    # last_run/seen_run (set for every file a run sees) are not results; which files results cover is checked
    # apart (the file set).
    db.execute("CREATE TABLE result_changes (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
    db.execute("INSERT INTO result_changes(id, version) VALUES (1, 0)")
    bump = "BEGIN UPDATE result_changes SET version = version + 1 WHERE id = 1; END"
    watched = {"files": "UPDATE OF path, display, root, sha256, status, reason_code, reason, duplicate_of",
               "jobs": "UPDATE", "review_state": "UPDATE", "attempts": "UPDATE OF raw_answer"}
    for table, update in watched.items():
        for event in ("INSERT", "DELETE", update):
            name = f"{table}_{event.split()[0].lower()}_changes_results"
            db.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} {bump}")


def _v17_status_tallies(db: sqlite3.Connection) -> None:
    # `imgtag status` at a million images (issue 20.3, docs/store.md): what it shows is kept as the rows change, by
    # the triggers below in the same transaction as every write, instead of counted from a million rows per call.
    # store/tallies.py reads them (and counts from rows the few files outside the folder's file set, see there);
    # tests/test_tallies.py recounts them from the rows after runs, retries, prune, batches and review edits.
    # The summaries have no rowid: each is a handful of rows, looked up by its key. A NULL in a key is '' (NULLs are
    # distinct in a primary key, so an upsert would never find the row).
    # Made again from the rows when run again (a store set back to an older version): the summaries are only ever
    # what the rows say.
    made = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'tally_%'").fetchall()
    for (old,) in made:
        db.execute(f"DROP TRIGGER {old}")
    for table in ("tally_answers", "tally_spend", "tally_sizes", "tally_review"):
        db.execute(f"DROP TABLE IF EXISTS {table}")
    key = "preset_version TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL"
    # Files by status and cause are not kept: `status` counts them from files_set, index only (0.07 s at a million
    # files), which costs a first run less than a summary row written in each of its transactions (a page more each).
    # Readable (ok) files joined to each target's answered (ok, failed) job for their content, by the job's status
    # and error type: a target's ok / failed images and their causes.
    db.execute(f"CREATE TABLE tally_answers ({key}, status TEXT NOT NULL, error_type TEXT NOT NULL,"
               " n INTEGER NOT NULL, PRIMARY KEY (preset_version, provider, model, status, error_type)) WITHOUT ROWID")
    # Each target's attempts summed (tokens, dollars, credits) and its requests: the images of a pack share their
    # answer's request id, and a batch item with no request id was never a request (as summary.py counts them).
    db.execute(f"CREATE TABLE tally_spend ({key}, attempts INTEGER NOT NULL DEFAULT 0,"
               " requests INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0,"
               " output_tokens INTEGER NOT NULL DEFAULT 0, cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,"
               " cache_read_input_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0.0,"
               " cost_unknown INTEGER NOT NULL DEFAULT 0, credits_amount REAL NOT NULL DEFAULT 0.0,"
               " credits_counted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (preset_version, provider, model))"
               " WITHOUT ROWID")
    # Each target's jobs by the pixel size of their content (width * 2^32 + height, of any file holding it that was
    # measured; copies have the same size): the estimate `status` shows beside the actual cost.
    db.execute(f"CREATE TABLE tally_sizes ({key}, size INTEGER NOT NULL, n INTEGER NOT NULL,"
               " PRIMARY KEY (preset_version, provider, model, size)) WITHOUT ROWID")
    # Each target's review rows (`imgtag review`) of ok files whose job for that target is ok, by approved (1) /
    # rejected (-1) / not yet (0) and edited or not: the review line.
    db.execute(f"CREATE TABLE tally_review ({key}, reviewed INTEGER NOT NULL, edited INTEGER NOT NULL,"
               " n INTEGER NOT NULL, PRIMARY KEY (preset_version, provider, model, reviewed, edited)) WITHOUT ROWID")
    # Whether another attempt of the same target carries a request id (a pack's images share one): a seek.
    db.execute("CREATE INDEX IF NOT EXISTS attempts_request ON attempts(request_id) WHERE request_id IS NOT NULL")

    # Backfill from the rows, so a store from before this version upgrades.
    db.execute("INSERT INTO tally_answers SELECT j.preset_version, j.provider, j.model, j.status,"
               " COALESCE(j.error_type, ''), COUNT(*) FROM jobs j JOIN files f ON f.sha256 = j.sha256"
               " AND f.status = 'ok' WHERE j.status IN ('ok', 'failed') GROUP BY 1, 2, 3, 4, 5")
    db.execute("INSERT INTO tally_spend SELECT j.preset_version, j.provider, j.model, COUNT(*),"
               " COUNT(DISTINCT CASE WHEN a.request_id IS NOT NULL THEN a.request_id WHEN a.mode = 'batch' THEN NULL"
               " ELSE 'attempt ' || a.id END), SUM(a.input_tokens), SUM(a.output_tokens),"
               " SUM(a.cache_creation_input_tokens), SUM(a.cache_read_input_tokens), TOTAL(a.cost_usd),"
               " SUM(a.cost_unknown), TOTAL(a.credits_amount), COUNT(a.credits_amount)"
               " FROM attempts a JOIN jobs j ON j.id = a.job_id GROUP BY 1, 2, 3")
    db.execute("INSERT INTO tally_review SELECT r.preset_version, r.provider, r.model, r.reviewed, r.edits <> '{}',"
               " COUNT(*) FROM review_state r JOIN files f ON f.id = r.file_id AND f.status = 'ok' JOIN jobs j"
               " ON j.sha256 = f.sha256 AND j.preset_version = r.preset_version AND j.provider = r.provider"
               " AND j.model = r.model AND j.status = 'ok' GROUP BY 1, 2, 3, 4, 5")
    db.execute(f"INSERT INTO tally_sizes SELECT preset_version, provider, model, size, COUNT(*) FROM (SELECT"
               f" j.preset_version, j.provider, j.model, ({_SIZE_OF.format(sha='j.sha256')}) AS size FROM jobs j)"
               " WHERE size IS NOT NULL GROUP BY 1, 2, 3, 4")

    # Each trigger runs its statements only for the rows it concerns (WHEN): a file reserved at discovery (unread, so
    # no content yet) or a job created pending costs one statement or none. A rerun's bulk update of last_run and
    # seen_run fires nothing (no UPDATE OF lists them).
    def trigger(name: str, event: str, when: str, *statements: str) -> None:
        db.execute(f"CREATE TRIGGER {name} AFTER {event}{f' WHEN {when}' if when else ''} BEGIN"
                   f" {' '.join(statements)} END")

    def counted_while(name: str, table: str, update_of: str, moved: str, concerns: str, statement: str,
                      add: str | int, take: str | int) -> None:
        """The four triggers that keep a row counted while it `concerns` ({r}: NEW or OLD) a tally: inserted,
        deleted, and an update that `moved` it out of the condition (`name`_leaves) or into it (`name`_enters).
        `statement` takes {row} and {n}: `add` counts a row in, `take` counts it out."""
        trigger(f"{name}_insert", f"INSERT ON {table}", concerns.format(r="NEW"), statement.format(row="NEW", n=add))
        trigger(f"{name}_delete", f"DELETE ON {table}", concerns.format(r="OLD"), statement.format(row="OLD", n=take))
        trigger(f"{name}_leaves", update_of, f"{moved} AND {concerns.format(r='OLD')}",
                statement.format(row="OLD", n=take))
        trigger(f"{name}_enters", update_of, f"{moved} AND {concerns.format(r='NEW')}",
                statement.format(row="NEW", n=add))

    # Answers: an ok file with content counts once for each target's answered (ok or failed) job of its content. A
    # file's side: it is added or removed, changes content, becomes (un)readable; a job's: it is created, settled,
    # reopened, sent in a batch.
    readable = "{r}.status = 'ok' AND {r}.sha256 IS NOT NULL"
    moved = "((OLD.status = 'ok') IS NOT (NEW.status = 'ok') OR OLD.sha256 IS NOT NEW.sha256)"
    file_moves = "UPDATE OF status, sha256 ON files"
    counted_while("tally_answers_file", "files", file_moves, moved, readable, _FILE_ANSWERS, 1, -1)
    answered = "{r}.status IN ('ok', 'failed')"
    changed = ("(OLD.status IS NOT NEW.status OR OLD.error_type IS NOT NEW.error_type OR OLD.sha256 IS NOT NEW.sha256"
               " OR OLD.preset_version IS NOT NEW.preset_version OR OLD.provider IS NOT NEW.provider"
               " OR OLD.model IS NOT NEW.model)")
    watched = "UPDATE OF status, error_type, sha256, preset_version, provider, model ON jobs"
    counted_while("tally_answers_job", "jobs", watched, changed, answered, _JOB_ANSWERS, "", "-")

    # Spend: attempts are only ever added (never changed); a delete is undone for completeness.
    trigger("tally_spend_insert", "INSERT ON attempts", "", _SPEND.format(row="NEW", s="+"))
    trigger("tally_spend_delete", "DELETE ON attempts", "", _SPEND.format(row="OLD", s="-"))

    # Sizes: a job counts at its content's size once some file holding that content was measured.
    trigger("tally_sizes_job_insert", "INSERT ON jobs", "", _JOB_SIZE.format(row="NEW", n=1))
    trigger("tally_sizes_job_delete", "DELETE ON jobs", "", _JOB_SIZE.format(row="OLD", n=-1))
    trigger("tally_sizes_job_update", "UPDATE OF sha256, preset_version, provider, model ON jobs",
            "OLD.sha256 IS NOT NEW.sha256 OR OLD.preset_version IS NOT NEW.preset_version"
            " OR OLD.provider IS NOT NEW.provider OR OLD.model IS NOT NEW.model",
            _JOB_SIZE.format(row="OLD", n=-1), _JOB_SIZE.format(row="NEW", n=1))
    sized = "{r}.width IS NOT NULL AND {r}.sha256 IS NOT NULL"
    resized = "(OLD.sha256 IS NOT NEW.sha256 OR OLD.width IS NOT NEW.width OR OLD.height IS NOT NEW.height)"
    counted_while("tally_sizes_file", "files", "UPDATE OF sha256, width, height ON files", resized, sized,
                  _FILE_SIZE, 1, -1)

    # Review: a review row counts while its file is ok and the file's job for the row's target is ok. The review
    # server writes only review_state; a run moves files and jobs.
    review_changed = ("OLD.reviewed IS NOT NEW.reviewed OR (OLD.edits <> '{}') IS NOT (NEW.edits <> '{}')"
                      " OR OLD.file_id IS NOT NEW.file_id OR OLD.preset_version IS NOT NEW.preset_version"
                      " OR OLD.provider IS NOT NEW.provider OR OLD.model IS NOT NEW.model")
    trigger("tally_review_insert", "INSERT ON review_state", "", _REVIEW_ROW.format(row="NEW", n=1))
    trigger("tally_review_delete", "DELETE ON review_state", "", _REVIEW_ROW.format(row="OLD", n=-1))
    trigger("tally_review_update", "UPDATE ON review_state", review_changed, _REVIEW_ROW.format(row="OLD", n=-1),
            _REVIEW_ROW.format(row="NEW", n=1))
    counted_while("tally_review_file", "files", file_moves, moved, readable, _FILE_REVIEWS, 1, -1)
    counted_while("tally_review_job", "jobs", watched, changed, "{r}.status = 'ok'", _JOB_REVIEWS, "", "-")


# The statements of _v17_status_tallies's triggers ({row}: NEW or OLD; {n}: +1 or -1). Frozen with it: a later change
# is a new migration that drops and re-creates the triggers.
_FILE_ANSWERS = ("INSERT INTO tally_answers(preset_version, provider, model, status, error_type, n)"
                 " SELECT preset_version, provider, model, status, COALESCE(error_type, ''), {n} FROM jobs"
                 " WHERE sha256 = {row}.sha256 AND status IN ('ok', 'failed')"
                 " ON CONFLICT DO UPDATE SET n = n + excluded.n;")
_JOB_ANSWERS = ("INSERT INTO tally_answers(preset_version, provider, model, status, error_type, n)"
                " SELECT {row}.preset_version, {row}.provider, {row}.model, {row}.status,"
                " COALESCE({row}.error_type, ''), {n}c FROM (SELECT COUNT(*) AS c FROM files"
                " WHERE sha256 = {row}.sha256 AND status = 'ok') WHERE c > 0"
                " ON CONFLICT DO UPDATE SET n = n + excluded.n;")
_SIZE_OF = "SELECT width * 4294967296 + height FROM files WHERE sha256 = {sha} AND width IS NOT NULL LIMIT 1"
_JOB_SIZE = ("INSERT INTO tally_sizes(preset_version, provider, model, size, n) SELECT {row}.preset_version,"
             " {row}.provider, {row}.model, size, {n} FROM (SELECT ("
             + _SIZE_OF.format(sha="{row}.sha256")
             + ") AS size) WHERE size IS NOT NULL ON CONFLICT DO UPDATE SET n = n + excluded.n;")
# A file is the size of its content's jobs only while no other measured file holds that content.
_FILE_SIZE = ("INSERT INTO tally_sizes(preset_version, provider, model, size, n) SELECT preset_version, provider,"
              " model, {row}.width * 4294967296 + {row}.height, {n} FROM jobs WHERE sha256 = {row}.sha256"
              " AND NOT EXISTS (SELECT 1 FROM files WHERE sha256 = {row}.sha256"
              " AND width IS NOT NULL AND id <> {row}.id) ON CONFLICT DO UPDATE SET n = n + excluded.n;")
# A review row, when its file is ok and the file's job for the row's target is ok.
_REVIEW_ROW = ("INSERT INTO tally_review(preset_version, provider, model, reviewed, edited, n) SELECT"
               " {row}.preset_version, {row}.provider, {row}.model, {row}.reviewed, {row}.edits <> '{{}}', {n}"
               " FROM files f JOIN jobs j ON j.sha256 = f.sha256 AND j.preset_version = {row}.preset_version"
               " AND j.provider = {row}.provider AND j.model = {row}.model AND j.status = 'ok'"
               " WHERE f.id = {row}.file_id AND f.status = 'ok' ON CONFLICT DO UPDATE SET n = n + excluded.n;")
# A file's review rows whose target's job for the file's content is ok (CROSS JOIN: the file's rows first, else the
# planner reads every ok job).
_FILE_REVIEWS = ("INSERT INTO tally_review(preset_version, provider, model, reviewed, edited, n) SELECT"
                 " r.preset_version, r.provider, r.model, r.reviewed, r.edits <> '{{}}', {n} FROM review_state r"
                 " CROSS JOIN jobs j ON j.sha256 = {row}.sha256 AND j.preset_version = r.preset_version"
                 " AND j.provider = r.provider AND j.model = r.model AND j.status = 'ok' WHERE r.file_id = {row}.id"
                 " ON CONFLICT DO UPDATE SET n = n + excluded.n;")
# An ok job's review rows: those of its target on the ok files holding its content.
_JOB_REVIEWS = ("INSERT INTO tally_review(preset_version, provider, model, reviewed, edited, n) SELECT"
                " {row}.preset_version, {row}.provider, {row}.model, r.reviewed, r.edits <> '{{}}', {n}COUNT(*)"
                " FROM files f JOIN review_state r ON r.file_id = f.id AND r.preset_version = {row}.preset_version"
                " AND r.provider = {row}.provider AND r.model = {row}.model WHERE f.sha256 = {row}.sha256"
                " AND f.status = 'ok' GROUP BY r.reviewed, r.edits <> '{{}}'"
                " ON CONFLICT DO UPDATE SET n = n + excluded.n;")
_SPEND = ("INSERT INTO tally_spend(preset_version, provider, model, attempts, requests, input_tokens, output_tokens,"
          " cache_creation_input_tokens, cache_read_input_tokens, cost_usd, cost_unknown, credits_amount,"
          " credits_counted) SELECT j.preset_version, j.provider, j.model, {s}1,"
          # A request: its id's first attempt of this target (a pack's images share it), or an attempt without an id
          # that was not a batch item. On delete: its id's last one.
          " {s}(CASE WHEN {row}.request_id IS NOT NULL THEN NOT EXISTS (SELECT 1 FROM attempts a JOIN jobs o"
          " ON o.id = a.job_id WHERE a.request_id = {row}.request_id AND a.id <> {row}.id"
          " AND o.preset_version = j.preset_version AND o.provider = j.provider AND o.model = j.model)"
          " ELSE {row}.mode IS NOT 'batch' END), {s}{row}.input_tokens, {s}{row}.output_tokens,"
          " {s}{row}.cache_creation_input_tokens, {s}{row}.cache_read_input_tokens, {s}{row}.cost_usd,"
          " {s}{row}.cost_unknown, {s}COALESCE({row}.credits_amount, 0.0), {s}({row}.credits_amount IS NOT NULL)"
          " FROM jobs j WHERE j.id = {row}.job_id ON CONFLICT DO UPDATE SET attempts = attempts + excluded.attempts,"
          " requests = requests + excluded.requests, input_tokens = input_tokens + excluded.input_tokens,"
          " output_tokens = output_tokens + excluded.output_tokens,"
          " cache_creation_input_tokens = cache_creation_input_tokens + excluded.cache_creation_input_tokens,"
          " cache_read_input_tokens = cache_read_input_tokens + excluded.cache_read_input_tokens,"
          " cost_usd = cost_usd + excluded.cost_usd, cost_unknown = cost_unknown + excluded.cost_unknown,"
          " credits_amount = credits_amount + excluded.credits_amount,"
          " credits_counted = credits_counted + excluded.credits_counted;")


# A migration's place in this list is its version (user_version), not the number in its name: _v15_scale_indexes
# landed as version 14 (a _v14_ was expected from another branch). Append after it, never insert before it: a store
# already at 14 would skip a migration put in front.
MIGRATIONS: list[Migration] = [_v1_initial, _v2_credits, _v3_export_ledger, _v4_server_caps, _v5_learned_limits,
                              _v6_run_end_state, _v7_ray_shards, _v8_xmp, _v9_batch_packs, _v10_review,
                              _v11_files_seen_run, _v12_raw_answers, _v13_cost_unknown,
                              _v15_scale_indexes, _v16_rerun_state, _v17_status_tallies]


# From this many files up, an upgrade is announced before it starts: a migration that fills a new table from the
# rows (_v17_status_tallies) takes about 20 µs of CPU per file, so a million-image store is busy for a minute or
# more on the first command after an upgrade, and a silent minute looks like a hang.
ANNOUNCE_UPGRADE_FROM_FILES = 50_000


def migrate(db: sqlite3.Connection, store_path: str = "imgtag.db") -> int:
    """Bring the database to the newest schema; returns the version. Each step is its own transaction.

    A large store's upgrade is announced first, as a warning of the `imgtag.store` logger (Python prints it to
    stderr when the application configured no logging, as the CLI does not)."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"this store was written by a newer imgtag (schema {version}, this version knows {len(MIGRATIONS)})"
        )
    if 0 < version < len(MIGRATIONS):
        _announce_upgrade(db, store_path)
    for number in range(version, len(MIGRATIONS)):
        with db:
            db.execute("BEGIN IMMEDIATE")
            MIGRATIONS[number](db)
            db.execute(f"PRAGMA user_version = {number + 1}")
    return len(MIGRATIONS)


def _announce_upgrade(db: sqlite3.Connection, store_path: str) -> None:
    (files,) = db.execute("SELECT COUNT(*) FROM files").fetchone()
    if files >= ANNOUNCE_UPGRADE_FROM_FILES:
        logging.getLogger("imgtag.store").warning(
            "imgtag: upgrading %s to this version's format (%s files; once, this may take a minute)",
            store_path, f"{files:,}")
