"""Tests for discover: exactly once, streaming, and surviving the file system's nasty corners."""

from __future__ import annotations

import csv
import inspect
import io
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CORPUS, EDGE
from imgtag.ingest import discover as discover_module
from imgtag.ingest.discover import Discovered, DiscoveryStats, discover, printable


def _run(inputs: list[str], **kwargs: object) -> tuple[list[Discovered], DiscoveryStats]:
    stats = DiscoveryStats()
    found = list(discover(inputs, stats=stats, **kwargs))  # type: ignore[arg-type]
    return found, stats


def _displays(found: list[Discovered]) -> list[str]:
    return [d.display for d in found]


def _touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- the real corpus ---------------------------------------------------------------------------


def _manifest_edge_files() -> set[str]:
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8", newline="") as fh:
        rows = csv.DictReader(fh, delimiter="\t")
        return {row["path"].removeprefix("edge/") for row in rows if row["path"].startswith("edge/")}


def test_edge_corpus_every_file_exactly_once(corpus: Path) -> None:
    found, stats = _run([str(EDGE)])
    displays = _displays(found)
    assert len(displays) == len(set(displays)), "a file was yielded twice"
    assert set(displays) == _manifest_edge_files()
    assert all(d.problem is None for d in found)
    assert all(d.root == os.path.abspath(EDGE) for d in found)
    assert all(os.path.isabs(d.path) and os.path.isfile(d.path) for d in found)
    by_display = {d.display: d for d in found}
    chinese = by_display["中文目录/火车票 照片.jpeg"]
    assert chinese.path == os.path.join(os.path.abspath(EDGE), "中文目录", "火车票 照片.jpeg")
    assert chinese.size == os.path.getsize(chinese.path)
    assert by_display["zero_bytes.jpg"].size == 0
    assert stats.missing_args == []
    assert stats.duplicates_suppressed == 0


def test_edge_corpus_overlapping_arguments_still_once(corpus: Path) -> None:
    args = [str(EDGE), str(EDGE / "PETS.JPEG"), str(EDGE / "中文目录"), str(EDGE / "*.jp*g")]
    found, stats = _run(args)
    assert len(found) == len(_manifest_edge_files())
    assert len({d.path for d in found}) == len(found)
    assert stats.duplicates_suppressed >= 2
    assert stats.missing_args == []  # the glob matched, even though only already-seen files


def test_edge_corpus_folder_order_is_sorted_and_reproducible(corpus: Path) -> None:
    first = _displays(_run([str(EDGE)])[0])
    assert first == _displays(_run([str(EDGE)])[0])
    top_level = [d for d in first if "/" not in d]
    assert top_level == sorted(top_level)


# -- hidden and system files ---------------------------------------------------------------------


def test_hidden_and_system_files_are_skipped_and_counted(tmp_path: Path) -> None:
    for rel in [
        "a.jpg",
        ".DS_Store",
        "Thumbs.db",
        "desktop.ini",
        "._a.jpg",
        ".hidden/x.jpg",
        "sub/b.jpg",
        "sub/.git/objects/y.jpg",
        "sub/@eaDir/thumb.jpg",
    ]:
        _touch(tmp_path / rel)
    found, stats = _run([str(tmp_path)])
    assert _displays(found) == ["a.jpg", "sub/b.jpg"]
    # .DS_Store, Thumbs.db, desktop.ini, ._a.jpg, .hidden/, .git/, @eaDir/
    assert stats.ignored_hidden == 7


def test_hidden_file_given_explicitly_is_yielded(tmp_path: Path) -> None:
    hidden = _touch(tmp_path / ".secret.jpg", b"x")
    found, stats = _run([str(hidden)])
    assert len(found) == 1
    assert found[0].display == str(hidden)
    assert found[0].root is None
    assert found[0].size == 1
    assert stats.ignored_hidden == 0


def test_hidden_folder_given_explicitly_is_walked(tmp_path: Path) -> None:
    _touch(tmp_path / ".photos" / "a.jpg")
    found, _ = _run([str(tmp_path / ".photos")])
    assert _displays(found) == ["a.jpg"]


# -- symlinks ------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_symlink_loop_terminates_and_is_counted(tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    _touch(folder / "a.jpg")
    (folder / "link").symlink_to(folder, target_is_directory=True)
    (folder / "up").symlink_to(tmp_path, target_is_directory=True)
    found, stats = _run([str(tmp_path)])
    assert _displays(found) == ["dir/a.jpg"]
    assert stats.symlink_loops == 2


@pytest.mark.timeout(20)
def test_symlink_loop_inside_glob_double_star_terminates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _touch(tmp_path / "d" / "a.jpg")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    found, stats = _run(["**/*.jpg"])
    assert _displays(found) == ["d/a.jpg"]
    assert stats.symlink_loops >= 1


def test_symlink_to_file_already_seen_is_not_yielded_twice(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg", b"abc")
    (tmp_path / "b_link.jpg").symlink_to(tmp_path / "a.jpg")
    found, stats = _run([str(tmp_path), str(tmp_path / "b_link.jpg")])
    # several inputs: each folder's files are shown with the folder as typed, so names never collide
    assert _displays(found) == [f"{tmp_path}/a.jpg"]
    assert stats.duplicates_suppressed == 2


def test_symlinked_file_and_folder_outside_the_root_are_followed(tmp_path: Path) -> None:
    outside = _touch(tmp_path / "outside" / "o.jpg", b"12345")
    root = tmp_path / "root"
    root.mkdir()
    (root / "file_link.jpg").symlink_to(outside)
    (root / "dir_link").symlink_to(outside.parent, target_is_directory=True)
    (root / "dir_link2").symlink_to(outside.parent, target_is_directory=True)
    found, stats = _run([str(root)])
    # The same target reached three ways is one file; the path is the link, not resolved.
    assert _displays(found) == ["dir_link/o.jpg"]
    assert found[0].path == str(root / "dir_link" / "o.jpg")
    assert found[0].size == 5
    assert stats.duplicates_suppressed == 2  # dir_link2 (folder) and file_link.jpg


def test_follow_symlinks_false_skips_links_met_while_walking(tmp_path: Path) -> None:
    _touch(tmp_path / "real" / "a.jpg")
    root = tmp_path / "root"
    _touch(root / "b.jpg")
    (root / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    (root / "c.jpg").symlink_to(tmp_path / "real" / "a.jpg")
    found, _ = _run([str(root)], follow_symlinks=False)
    assert _displays(found) == ["b.jpg"]
    # ... but a link given explicitly is what the user asked for.
    found, _ = _run([str(root / "c.jpg")], follow_symlinks=False)
    assert len(found) == 1 and found[0].problem is None


def test_broken_symlink_has_a_problem(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    found, stats = _run([str(tmp_path)])
    by_display = {d.display: d for d in found}
    assert by_display["gone.jpg"].problem == "broken symlink"
    assert by_display["gone.jpg"].size is None
    assert by_display["a.jpg"].problem is None
    # Given explicitly too (and not mistaken for a missing argument).
    found, stats = _run([str(tmp_path / "gone.jpg")])
    assert [(d.display, d.root, d.problem) for d in found] == [
        (str(tmp_path / "gone.jpg"), None, "broken symlink")
    ]
    assert stats.missing_args == []
    # Reached both ways: still one report.
    found, stats = _run([str(tmp_path), str(tmp_path / "gone.jpg")])
    assert [d.display for d in found if d.problem] == [f"{tmp_path}/gone.jpg"]
    assert stats.duplicates_suppressed == 1


def test_self_referencing_file_symlink_is_a_loop_problem(tmp_path: Path) -> None:
    (tmp_path / "self.jpg").symlink_to(tmp_path / "self.jpg")
    found, stats = _run([str(tmp_path)])
    assert [d.problem for d in found] == ["symlink loop"]
    assert stats.symlink_loops == 1
    found, stats = _run([str(tmp_path / "self.jpg")])
    assert [d.problem for d in found] == ["symlink loop"]
    assert stats.symlink_loops == 1


# -- files that must never be opened, or cannot be read -------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_is_reported_and_never_opened(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")  # opening this would block until the timeout fails the test
    found, _ = _run([str(tmp_path), str(tmp_path / "pipe.jpg")])
    by_display = {d.display: d for d in found}
    assert by_display[f"{tmp_path}/pipe.jpg"].problem == "not a regular file (FIFO)"
    assert by_display[f"{tmp_path}/pipe.jpg"].size is None
    assert len(found) == 2  # the explicit argument is the same FIFO: not reported twice
    found, _ = _run([str(tmp_path / "pipe.jpg")])
    assert [d.problem for d in found] == ["not a regular file (FIFO)"]


def test_unreadable_folder_is_reported_and_the_walk_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _touch(tmp_path / "a" / "1.jpg")
    _touch(tmp_path / "locked" / "2.jpg")
    _touch(tmp_path / "z" / "3.jpg")
    real_scandir = os.scandir
    locked = str(tmp_path / "locked")

    def scandir(path: str) -> object:
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found, _ = _run([str(tmp_path)])
    assert [(d.display, d.problem) for d in found] == [
        ("a/1.jpg", None),
        ("locked", "cannot read folder: permission denied"),
        ("z/3.jpg", None),
    ]
    # An unreadable folder given directly is one problem line, shown as given.
    found, _ = _run([locked])
    assert [(d.display, d.root, d.problem) for d in found] == [
        (locked, None, "cannot read folder: permission denied")
    ]


def test_unstatable_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _touch(tmp_path / "a.jpg")
    _touch(tmp_path / "b.jpg")
    real_lstat = os.lstat
    bad = str(tmp_path / "a.jpg")

    def lstat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        if os.fspath(path) == bad:
            raise PermissionError(13, "Permission denied", path)
        return real_lstat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "lstat", lstat)
    found, _ = _run([str(tmp_path)])
    assert [(d.display, d.problem) for d in found] == [("a.jpg", "permission denied"), ("b.jpg", None)]


# -- identity: copies vs links ----------------------------------------------------------------------


def test_byte_identical_copies_are_both_yielded_but_hard_links_once(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg", b"same")
    _touch(tmp_path / "b.jpg", b"same")
    os.link(tmp_path / "a.jpg", tmp_path / "c_hardlink.jpg")
    found, stats = _run([str(tmp_path)])
    assert _displays(found) == ["a.jpg", "b.jpg"]
    assert stats.duplicates_suppressed == 1


def test_extension_does_not_filter(tmp_path: Path) -> None:
    for name in ["noext", "notes.txt", "photo.JPEG", "weird.jpg.bak"]:
        _touch(tmp_path / name, b"data")
    found, _ = _run([str(tmp_path)])
    assert _displays(found) == ["noext", "notes.txt", "photo.JPEG", "weird.jpg.bak"]


# -- globs --------------------------------------------------------------------------------------------


@pytest.fixture
def glob_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for rel in [
        "a.jpg",
        "b.jpg",
        "c.png",
        ".h.jpg",
        "sub/d.jpg",
        "sub/deep/e.jpg",
        "sub/f.png",
        "other/g.jpg",
    ]:
        _touch(tmp_path / rel)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_glob_star_matches_like_the_shell(glob_tree: Path) -> None:
    found, stats = _run(["*.jpg"])
    assert _displays(found) == ["a.jpg", "b.jpg"]  # not the dot-file, as in the shell
    assert all(d.root is None for d in found)
    assert found[0].path == str(glob_tree / "a.jpg")
    assert stats.missing_args == []


def test_glob_question_mark_and_class(glob_tree: Path) -> None:
    assert _displays(_run(["?.png"])[0]) == ["c.png"]
    assert _displays(_run(["[ab].jpg"])[0]) == ["a.jpg", "b.jpg"]
    # "deep" is a matched folder: walked, its files shown under the matched path (a glob may match many).
    assert _displays(_run(["sub/[!f]*"])[0]) == ["sub/d.jpg", "sub/deep/e.jpg"]


def test_glob_double_star_recurses(glob_tree: Path) -> None:
    found, _ = _run(["**/*.jpg"])
    assert _displays(found) == ["a.jpg", "b.jpg", "other/g.jpg", "sub/d.jpg", "sub/deep/e.jpg"]
    found, _ = _run(["sub/**/*.png"])
    assert _displays(found) == ["sub/f.png"]


def test_glob_matching_a_folder_walks_it(glob_tree: Path) -> None:
    found, _ = _run(["s*"])
    assert [(d.display, d.root) for d in found] == [
        ("sub/d.jpg", str(glob_tree / "sub")),
        ("sub/deep/e.jpg", str(glob_tree / "sub")),
        ("sub/f.png", str(glob_tree / "sub")),
    ]
    found, _ = _run(["sub/**"])
    assert _displays(found) == ["d.jpg", "deep/e.jpg", "f.png"]


def test_absolute_glob(glob_tree: Path) -> None:
    found, _ = _run([str(glob_tree / "sub" / "*.jpg")])
    assert _displays(found) == [str(glob_tree / "sub" / "d.jpg")]


def test_literal_path_wins_over_glob(glob_tree: Path) -> None:
    _touch(glob_tree / "x*.jpg")
    _touch(glob_tree / "xa.jpg")
    assert _displays(_run(["x*.jpg"])[0]) == ["x*.jpg"]


def test_glob_that_matches_nothing_is_a_missing_argument(glob_tree: Path) -> None:
    found, stats = _run(["*.gif", "nowhere/*.jpg", "missing.jpg", "@no-such-list.txt", "a.jpg"])
    assert _displays(found) == ["a.jpg"]
    assert stats.missing_args == ["*.gif", "nowhere/*.jpg", "missing.jpg", "@no-such-list.txt"]


# -- list files and stdin -------------------------------------------------------------------------------


def test_list_file_with_comments_blank_lines_and_relative_paths(glob_tree: Path) -> None:
    lists = glob_tree / "lists"
    lists.mkdir()
    (lists / "l.txt").write_text(
        "\ufeff# photos to tag\n\na.jpg\n   \n  # indented comment\nsub\nother/*.jpg\r\nmissing.jpg\n",
        encoding="utf-8",
    )
    # Relative entries resolve against the current directory, not the list's folder.
    found, stats = _run(["@lists/l.txt"])
    assert _displays(found) == ["a.jpg", "sub/d.jpg", "sub/deep/e.jpg", "sub/f.png", "other/g.jpg"]
    assert found[0].path == str(glob_tree / "a.jpg")
    assert stats.missing_args == ["missing.jpg"]


def test_stdin_dash_reads_the_same_list_format(glob_tree: Path) -> None:
    stdin = io.StringIO("# from find\nb.jpg\n\nsub/d.jpg\n")
    found, _ = _run(["-", "c.png"], stdin=stdin)
    assert _displays(found) == ["b.jpg", "sub/d.jpg", "c.png"]


def test_at_name_that_is_really_a_file(glob_tree: Path) -> None:
    _touch(glob_tree / "@home.jpg")
    assert _displays(_run(["@home.jpg"])[0]) == ["@home.jpg"]


# -- names ----------------------------------------------------------------------------------------------


def test_non_utf8_file_name(tmp_path: Path) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")
    try:
        with open(raw, "wb") as fh:
            fh.write(b"bytes")
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    found, _ = _run([str(tmp_path)])
    assert len(found) == 1
    item = found[0]
    assert item.display == "caf\\xe9.jpg"
    item.display.encode("utf-8")  # valid UTF-8: no surrogates left
    assert item.problem is None
    with open(item.path, "rb") as fh:  # the path still opens the real file
        assert fh.read() == b"bytes"


def test_chinese_names_with_spaces(tmp_path: Path) -> None:
    _touch(tmp_path / "中文 目录" / "照片 一.jpg", b"x")
    found, _ = _run([str(tmp_path)])
    assert _displays(found) == ["中文 目录/照片 一.jpg"]
    assert os.path.isfile(found[0].path)


def test_printable_escapes_control_characters() -> None:
    assert printable("a\nb\tc.jpg") == "a\\x0ab\\x09c.jpg"
    assert printable("中文.jpg") == "中文.jpg"
    assert printable(os.fsdecode(b"x\xff.jpg")) == "x\\xff.jpg"


# -- exclude ------------------------------------------------------------------------------------------


def test_exclude_output_folder(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg")
    _touch(tmp_path / "imgtag-out" / "thumb.jpg")
    found, stats = _run([str(tmp_path)], exclude=[str(tmp_path / "imgtag-out")])
    assert _displays(found) == ["a.jpg"]
    assert stats.ignored_hidden == 1


def test_exclude_folder_created_after_discovery_started(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "1.jpg")
    out = tmp_path / "z-out"
    stats = DiscoveryStats()
    gen = discover([str(tmp_path / "a"), str(tmp_path)], stats=stats, exclude=[str(out)])
    first = next(gen)
    _touch(out / "results.jpg")  # the run creates its output while discovery streams
    assert [first.display, *_displays(list(gen))] == [f"{tmp_path}/a/1.jpg"]
    assert stats.ignored_hidden == 1
    assert stats.duplicates_suppressed == 1  # folder "a" reached again from the second argument


def test_exclude_given_relative_and_reached_through_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _touch(tmp_path / "a.jpg")
    _touch(tmp_path / "out" / "thumb.jpg")
    (tmp_path / "link").symlink_to(tmp_path / "out", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    found, stats = _run(["."], exclude=["out"])
    assert _displays(found) == ["a.jpg"]
    assert stats.ignored_hidden == 2


# -- streaming ------------------------------------------------------------------------------------------


def test_discover_is_a_generator() -> None:
    assert inspect.isgeneratorfunction(discover)
    assert inspect.isgenerator(discover([]))


@pytest.mark.timeout(60)
def test_large_folder_starts_yielding_at_once(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    for i in range(20_000):
        # os.open/close is the cheapest way to make an empty file.
        os.close(os.open(big / f"{i:05d}.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    gen = discover([str(big)])
    started = time.perf_counter()
    first = next(gen)
    assert time.perf_counter() - started < 2.0
    assert first.display == "00000.jpg"
    gen.close()


def test_walk_is_lazy_folder_by_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(30):
        _touch(tmp_path / f"d{i:02d}" / "x.jpg")
    calls: Counter[str] = Counter()
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        calls[os.fspath(path)] += 1
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    gen = discover([str(tmp_path)])
    assert next(gen).display == "d00/x.jpg"
    assert sum(calls.values()) == 2  # the root and d00 only
    rest = list(gen)
    assert len(rest) == 29
    assert max(calls.values()) == 1  # no folder listed twice


def test_stats_filled_as_the_generator_runs(tmp_path: Path) -> None:
    _touch(tmp_path / ".DS_Store")
    stats = DiscoveryStats()
    assert list(discover([str(tmp_path), str(tmp_path / "nope")], stats=stats)) == []
    assert stats == DiscoveryStats(ignored_hidden=1, missing_args=[str(tmp_path / "nope")])


def test_module_has_no_global_state() -> None:
    # Two discoveries must not share identity sets: the second run sees everything again.
    assert not any(isinstance(v, set) for v in vars(discover_module).values())


# -- property: exactly once against an os.walk oracle ------------------------------------------------

_NAMES = ["a", "b.jpg", "C.PNG", "d e", "中文", ".h", "._x.jpg", "Thumbs.db", "noext"]
_tree_paths = st.lists(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4), max_size=25)


def _oracle_hidden(name: str) -> bool:
    return name.startswith(".") or name in ("Thumbs.db", "desktop.ini")


def _oracle(root: str) -> Iterator[str]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not _oracle_hidden(d)]
        for name in files:
            if not _oracle_hidden(name):
                yield os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paths=_tree_paths, also_give_files=st.booleans())
def test_property_exactly_once_against_os_walk(paths: list[list[str]], also_give_files: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for parts in paths:
            target = os.path.join(tmp, *parts)
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if not os.path.exists(target):
                    with open(target, "wb") as fh:
                        fh.write(b"same bytes")  # identical copies must all be reported
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                pass  # a name already used as the other kind (file vs folder)
        expected = sorted(_oracle(tmp))
        args = [tmp]
        if also_give_files:  # overlapping arguments: the folder and some files inside it
            args += [os.path.join(tmp, rel) for rel in expected[::2]]
        found, stats = _run(args)
        assert all(d.problem is None for d in found)
        assert len({d.path for d in found}) == len(found)
        shown = [f"{tmp}/{rel}" for rel in expected] if len(args) > 1 else expected
        assert sorted(_displays(found)) == sorted(shown)
        assert stats.duplicates_suppressed == (len(expected[::2]) if also_give_files else 0)
