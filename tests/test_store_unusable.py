"""A store that SQLite cannot open (not a database, or on a read-only file system) is one sentence and exit 2 from
every command that opens it, never a traceback."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from imagegen import make_images, one_sentence, run_cli

SECRET = "test-key-not-real-SECRET-000000"


def junk_store(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "imgtag.db").write_text("this is not an SQLite file, only some text written in its place\n" * 4)
    return out


@pytest.mark.parametrize("command", ["status", "export", "retry", "cancel", "prune", "review"])
def test_a_file_that_is_not_a_database(tmp_path, monkeypatch, command):
    out = junk_store(tmp_path)
    code, output = run_cli([command, "--out", str(out)], {"ANTHROPIC_API_KEY": SECRET}, monkeypatch)
    assert code == 2, output
    line = one_sentence(output)
    assert "imgtag.db" in line and "not a database" in line, line


def test_run_into_a_folder_whose_store_is_not_a_database(tmp_path, monkeypatch):
    out = junk_store(tmp_path)
    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--dry-run", "-q"],
                           {"ANTHROPIC_API_KEY": SECRET}, monkeypatch)
    assert code == 2, output
    assert "not a database" in one_sentence(output)


def test_a_store_sqlite_cannot_open(tmp_path, monkeypatch):
    """What a store on a read-only file system gives: SQLite cannot make its WAL files beside it."""
    out = junk_store(tmp_path)
    real_connect = sqlite3.connect

    class Refusing:
        def __init__(self, *a, **k):
            self._db = real_connect(":memory:")

        def __getattr__(self, name):
            return getattr(self._db, name)

        def execute(self, sql, *a):
            raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", Refusing)
    code, output = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert code == 2, output
    line = one_sentence(output)
    assert "imgtag.db" in line and "unable to open database file" in line, line


def _as_reader(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a process that file modes hold: root drops the capabilities that let it write anyway (setpriv),
    anyone else is held by the bits themselves."""
    command = [sys.executable, "-m", "imgtag", *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("as root, file modes hold only a process without CAP_DAC_OVERRIDE (setpriv not found)")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "1000", "ANTHROPIC_API_KEY": ""})


@pytest.mark.parametrize("what", ["folder", "file", "folder with a writer's WAL"])
def test_status_reads_a_store_the_user_can_only_read(tmp_path, monkeypatch, fake_anthropic, what):
    """`imgtag status` on a read-only store (a backup, a colleague's share) said "cannot open the store ...:
    attempt to write a readonly database": it opens the store read-only now, and writes nothing beside it."""
    make_images(tmp_path / "in", 2)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    writer = None
    if what == "folder with a writer's WAL":  # a run still writing: its latest answers are only in the WAL
        writer = sqlite3.connect(out / "imgtag.db", isolation_level=None)
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("UPDATE files SET status = 'failed', reason_code = 'corrupt' WHERE display = 'img_0001.jpg'")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for p in out.iterdir():
        p.chmod(0o444)
    if what != "file":
        out.chmod(0o555)
    try:
        result = _as_reader(["status", "--out", str(out)])
        assert result.returncode == 0, result.stdout + result.stderr
        shown = "files 2: failed 1, ok 1" if writer else "files 2: ok 2"
        assert shown in result.stdout and not result.stderr, result.stdout + result.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written, nothing made
    finally:
        out.chmod(0o755)
        if writer is not None:
            writer.close()


def test_status_on_a_read_only_store_of_an_earlier_version_says_it_needs_an_upgrade(tmp_path, monkeypatch,
                                                                                  fake_anthropic):
    """Upgrading is a write: a read-only store of an earlier schema is one sentence (exit 2), never a traceback."""
    from imgtag.store.migrations import MIGRATIONS

    make_images(tmp_path / "in", 1)
    out = tmp_path / "o"
    run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake_anthropic.env(), monkeypatch)
    db = sqlite3.connect(out / "imgtag.db")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    db.close()
    out.chmod(0o555)
    try:
        result = _as_reader(["status", "--out", str(out)])
    finally:
        out.chmod(0o755)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "an earlier imgtag and needs an upgrade" in one_sentence(result.stderr + result.stdout)
