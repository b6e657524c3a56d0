"""A store that SQLite cannot open (not a database, or on a read-only file system) is one sentence and exit 2 from
every command that opens it, never a traceback."""

from __future__ import annotations

import sqlite3

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
