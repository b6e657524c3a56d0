"""Discover: turn the user's arguments into a stream of files, each reported exactly once.

Arguments may be files, folders (walked recursively), globs, ``@list.txt`` files or ``-`` (the
same list format on stdin). Discovery never opens a file: it only lists folders and stats
entries, so a FIFO cannot block it and a million-file folder costs one ``lstat`` per file.

Design choices, and why:

* It is a generator with an explicit stack of folders (no recursion, no list of all files), so the
  first file comes out at once and memory stays flat however big the tree is. Only the names of
  one folder per level are held (sorted, so runs are reproducible), plus the identities seen.
* "Exactly once" is by the *target's* (st_dev, st_ino): a folder given twice, a file given as
  well as its folder, a hard link or a symlink to a file already seen are all suppressed.
  Byte-identical copies have their own inodes and are both reported; duplicate *content* is
  found later by hashing.
* Symlinks are followed (users keep photo libraries behind links), so a link back to an ancestor
  folder would recurse forever: folders on the current path are tracked and such loops skipped
  and counted. Folders already walked completely are skipped globally.
* The extension never filters anything: files with no or a wrong extension must still be seen,
  and format identification by content happens later.
* Sidecars (``photo.jpg.xmp``, captions, ``metadata.jsonl``: see ``sidecars.py``) are dropped by name when
  the caller passes a rule, so a rerun does not report imgtag's own exports as files that are not images.
* Nothing at discovery time stops the run: an unreadable folder, a broken symlink or a FIFO
  becomes a ``Discovered`` with a one-line ``problem`` that the store records.
* Globs are matched here rather than with :mod:`glob`, which does not sort, does not guard
  ``**`` against symlink loops and could not share the de-duplication. A glob behaves like the
  shell expansion it stands for: a matched file is as if given directly, a matched folder as if
  given as a folder argument.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from imgtag.ingest.sidecars import SidecarRule, image_stems

__all__ = ["Discovered", "DiscoveryStats", "discover", "printable", "relative_display"]


@dataclass(frozen=True)
class Discovered:
    """One file found, or one input that cannot be used (then ``problem`` says why)."""

    path: str  # absolute (os.path.abspath, symlinks NOT resolved); may hold surrogate escapes
    display: str  # relative to ``root`` (POSIX separators) when walked, else the argument as given
    root: str | None  # abspath of the folder argument it was found under; None if given directly
    size: int | None
    mtime_ns: int | None
    problem: str | None = None  # one line, e.g. "not a regular file (FIFO)", "broken symlink"


@dataclass
class DiscoveryStats:
    """What discovery skipped, for the one-line summaries the CLI prints."""

    ignored_hidden: int = 0  # hidden/system entries (and excluded folders) not reported
    symlink_loops: int = 0
    missing_args: list[str] = field(default_factory=list)  # arguments that matched nothing
    duplicates_suppressed: int = 0  # same (st_dev, st_ino) reached more than once
    sidecars: int = 0  # XMP/JSON/caption sidecars and metadata.jsonl beside the images (ingest/sidecars.py)


# Names that are never content: OS metadata droppings. Compared case-folded because the
# Windows/SMB ones show up in any case. "@eaDir" (Synology) and "__MACOSX" (zip extraction)
# hold thumbnails and AppleDouble copies that look like images but would double the bill.
_SYSTEM_NAMES = frozenset(
    {
        "thumbs.db",
        "ehthumbs.db",
        "ehthumbs_vista.db",
        "desktop.ini",
        "$recycle.bin",
        "system volume information",
        "@eadir",
        "__macosx",
        "icon\r",  # macOS custom folder icon file
    }
)
_WINDOWS_HIDDEN = stat.FILE_ATTRIBUTE_HIDDEN | stat.FILE_ATTRIBUTE_SYSTEM

_MAGIC = re.compile(r"[*?[]")
_SEPARATORS = "/\\" if os.sep == "\\" else "/"
_COMPONENT = re.compile(r"[^/\\]+" if os.sep == "\\" else r"[^/]+")
# Globs match the way the platform's own glob does: case-insensitively on Windows only.
_GLOB_FLAGS = re.IGNORECASE if os.name == "nt" else 0

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def relative_display(path: str, base: str) -> str:
    """`path` (absolute) as shown in every output of a folder whose paths are measured from `base`: relative to
    it with "/" separators ("../" for a file outside it), absolute only where no relative path exists (another
    drive); one line of UTF-8, as printable() makes it."""
    prefix = base if base.endswith(os.sep) else base + os.sep
    if path.startswith(prefix) and os.path.isabs(base):
        # A file under the base (nearly always): what relpath gives, for both are normalised absolute paths,
        # without its cost (a rerun measures a million of them).
        shown = path[len(prefix):]
    else:
        try:
            shown = os.path.relpath(path, base)
        except ValueError:
            shown = path
    return printable(shown.replace(os.sep, "/") if os.sep != "/" else shown)


def printable(text: str) -> str:
    """Render a file-system string as one line of valid UTF-8.

    Undecodable bytes (surrogate escapes from ``os.fsdecode``) become ``\\xNN`` and control
    characters are escaped too, because a newline in a name would break one-line reports.
    """
    if text.isascii() and text.isprintable():  # nearly every name: nothing to escape
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # Lone surrogates outside the escape range (Windows names are UTF-16 and may hold them).
        raw = text.encode("utf-8", "backslashreplace")
    shown = raw.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", shown)


def is_hidden_name(name: str) -> bool:
    """Dot-files/folders (including AppleDouble ``._x``) and OS metadata files."""
    return name.startswith(".") or name.casefold() in _SYSTEM_NAMES


def _has_hidden_attribute(st: os.stat_result) -> bool:
    # Only Windows has st_file_attributes; there "hidden" is an attribute, not a name.
    return bool(getattr(st, "st_file_attributes", 0) & _WINDOWS_HIDDEN)


def _describe(exc: OSError) -> str:
    """One line for an OSError, without the path (the record already carries it)."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    text = exc.strerror or str(exc) or type(exc).__name__
    return " ".join(text.split())


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "unknown file type"


_Key = tuple[int, int] | str


def _key(st: os.stat_result, path: str) -> _Key:
    """Identity of a file-system object (of the symlink target when ``st`` followed links)."""
    if st.st_ino == 0:
        # Some filesystems (certain network shares, FAT via some drivers) report no inode
        # number; without this fallback every file there would look like the same file.
        return os.path.normcase(os.path.realpath(path))
    return (st.st_dev, st.st_ino)


class _Identities:
    """A set of identities kept lean: per device, inode numbers as bits of 64-bit words keyed by inode // 64.

    It holds one entry per file found, which is the only thing that grows with the tree. File systems hand out
    inode numbers close together for files made together, so a million files take some 16,000 words (a few MB)
    instead of a million ints in a set (about 60 MB, twice over while the up-front count walks too); scattered
    numbers cost about what a set would.
    """

    def __init__(self) -> None:
        self._by_dev: dict[int, dict[int, int]] = {}
        self._by_path: set[str] = set()

    def add(self, key: _Key) -> bool:
        """Record ``key``; True if it was new."""
        if isinstance(key, str):
            if key in self._by_path:
                return False
            self._by_path.add(key)
            return True
        words = self._by_dev.get(key[0])
        if words is None:
            words = self._by_dev[key[0]] = {}
        word, bit = key[1] >> 6, 1 << (key[1] & 63)
        bits = words.get(word, 0)
        if bits & bit:
            return False
        words[word] = bits | bit
        return True

    def __contains__(self, key: _Key) -> bool:
        if isinstance(key, str):
            return key in self._by_path
        words = self._by_dev.get(key[0])
        return words is not None and bool(words.get(key[1] >> 6, 0) & (1 << (key[1] & 63)))


@dataclass(frozen=True)
class _Pattern:
    """The part of a glob after its literal base folder, one regex per path component."""

    parts: tuple[str, ...]
    regexes: tuple[re.Pattern[str] | None, ...]  # None for a "**" component
    dirs_only: bool  # pattern ended with a separator, as in the shell's "*/"

    @classmethod
    def compile(cls, parts: Sequence[str], dirs_only: bool) -> _Pattern:
        regexes = tuple(None if p == "**" else re.compile(fnmatch.translate(p), _GLOB_FLAGS) for p in parts)
        return cls(tuple(parts), regexes, dirs_only)

    @property
    def accept(self) -> int:
        return len(self.parts)

    def closure(self, states: Iterable[int]) -> frozenset[int]:
        """Add the states reachable by letting each "**" match zero folders."""
        out: set[int] = set()
        for s in states:
            out.add(s)
            while s < self.accept and self.regexes[s] is None:
                s += 1
                out.add(s)
        return frozenset(out)

    def step(self, states: frozenset[int], name: str, hidden: bool) -> tuple[bool, bool, frozenset[int]]:
        """Match one entry name from a folder in ``states``.

        Returns (accepted if a file, accepted if a folder, states inside it if a folder).
        A trailing "**" only matches folders, as in glob; "**" never enters hidden folders and
        a hidden name only matches a component that names it explicitly (starts with a dot or
        has no wildcard), again as in glob.
        """
        advanced: set[int] = set()
        stay: set[int] = set()
        for s in states:
            if s == self.accept:
                continue
            regex = self.regexes[s]
            if regex is None:
                if not hidden:
                    stay.add(s)
            elif regex.match(name) and (not hidden or self._names_hidden(self.parts[s])):
                advanced.add(s + 1)
        inner = self.closure(advanced | stay)
        as_file = self.accept in advanced and not self.dirs_only
        return as_file, self.accept in inner, inner

    @staticmethod
    def _names_hidden(part: str) -> bool:
        return part.startswith(".") or not _MAGIC.search(part)


def _split_glob(pattern: str) -> tuple[str, _Pattern] | None:
    """Split into the literal base folder (as written) and the compiled remainder."""
    drive, rest = os.path.splitdrive(pattern)
    first = next((m.start() for m in _COMPONENT.finditer(rest) if _MAGIC.search(m.group())), None)
    if first is None:  # the wildcard was in the drive part (a UNC share name): not a glob
        return None
    head = rest[:first]
    # Keep a lone root separator ("/*.jpg" has base "/"), drop any other trailing one.
    base = drive + (head.rstrip(_SEPARATORS) or head[:1])
    parts = [m.group() for m in _COMPONENT.finditer(rest[first:])]
    return base, _Pattern.compile(parts, dirs_only=rest.endswith(tuple(_SEPARATORS)))


def _prefix(arg: str) -> str:
    """A folder argument as a display prefix: normalised ("./shopB/" -> "shopB"), "/" separators."""
    norm = os.path.normpath(arg)
    if norm == os.curdir:
        return ""
    return printable(norm.replace(os.sep, "/") if os.sep != "/" else norm)


def _join_display(prefix: str, name: str) -> str:
    if not prefix:
        return name
    if prefix.endswith(tuple(_SEPARATORS)):
        return prefix + name
    return prefix + "/" + name


def _read_list(lines: Iterable[str]) -> Iterator[str]:
    """Entries of an @list: one per line; blank lines and # comments ignored."""
    first = True
    for line in lines:
        entry = line.rstrip("\r\n")
        if first:
            entry = entry.removeprefix("\ufeff")  # a BOM from Windows editors (stdin has no -sig)
            first = False
        stripped = entry.strip()
        if not stripped or stripped.startswith("#"):
            continue
        # Stray spaces around an entry are usually editing noise, but a name may really
        # start or end with one: keep the line as written when that exists.
        yield entry if entry == stripped or os.path.lexists(entry) else stripped


@dataclass(slots=True)
class _Frame:
    """A folder being listed on the walk stack."""

    path: str  # absolute path of the folder
    display: str  # display of the folder itself; "" for a walked root
    root: str | None  # ``root`` for what is found inside
    states: frozenset[int] | None  # glob states, or None when everything inside is wanted
    key: _Key
    names: Iterator[str]
    listing: list[str]  # the same names, for the sidecar rule's image stems (computed only when asked)
    stems: frozenset[str] | None = None

    def image_stems(self) -> frozenset[str]:
        if self.stems is None:
            self.stems = image_stems(self.listing)
        return self.stems


class _Discoverer:
    def __init__(
        self, stats: DiscoveryStats, exclude: Sequence[str], follow_symlinks: bool, stdin: TextIO | None,
        sidecars: SidecarRule | None = None,
    ) -> None:
        self.stats = stats
        self.sidecars = sidecars
        self._parent_stems: tuple[str, frozenset[str]] | None = None  # for files given directly: last folder
        self.follow_symlinks = follow_symlinks
        self.stdin = stdin
        self.seen = _Identities()  # every file (or bad entry) already reported
        self.walked = _Identities()  # folders already walked completely
        self.unreadable: set[_Key] = set()  # folders already reported as unreadable
        # Excluded folders are matched by path (the output folder may only be created once the
        # run is under way) and, when they exist now, by identity (reached through a symlink).
        self.exclude_paths = {os.path.normcase(os.path.abspath(p)) for p in exclude}
        self.exclude_keys: set[_Key] = set()
        for p in exclude:
            with contextlib.suppress(OSError):
                self.exclude_keys.add(_key(os.stat(p), os.path.abspath(p)))
        self.matches = 0  # glob matches so far, to tell which globs matched nothing
        # Paths must be unambiguous in every output: a folder's files are shown relative to it only when it
        # is the one and only input; otherwise each starts with the folder as typed (shopA/item1.jpg).
        self.solo = False

    # -- arguments ---------------------------------------------------------------------------

    def run(self, inputs: Sequence[str]) -> Iterator[Discovered]:
        for arg in inputs:
            if arg == "-":
                yield from self._list_entries(_read_list(sys.stdin if self.stdin is None else self.stdin))
            elif arg.startswith("@") and len(arg) > 1 and not self._is_literal(arg):
                yield from self._list_file(arg)
            else:
                yield from self._argument(arg)

    def _is_literal(self, arg: str) -> bool:
        # "@x" names a list file, unless no file x exists and "@x" itself does (a photo may
        # really be called "@home.jpg").
        return not os.path.lexists(arg[1:]) and os.path.lexists(arg)

    def _list_file(self, arg: str) -> Iterator[Discovered]:
        try:
            # utf-8-sig: Windows editors write a BOM. surrogateescape: a list produced by
            # `find > list.txt` carries non-UTF-8 names as raw bytes, which must round-trip.
            # Read lazily, line by line: a list may hold a million entries (or be a pipe,
            # as in `imgtag run @<(find ...)`).
            lines = open(arg[1:], encoding="utf-8-sig", errors="surrogateescape")  # noqa: SIM115
        except OSError:
            self.stats.missing_args.append(printable(arg))
            return
        with lines:
            yield from self._list_entries(_read_list(lines))

    def _list_entries(self, entries: Iterable[str]) -> Iterator[Discovered]:
        self.solo = False  # a list may name many folders
        for entry in entries:
            yield from self._argument(entry)

    def _argument(self, arg: str) -> Iterator[Discovered]:
        """A path or glob given by the user (on the command line or in a list)."""
        shown = printable(arg)
        path = os.path.abspath(arg)
        try:
            st = os.stat(path)  # an explicit symlink is always followed: the user named it
        except OSError as exc:
            try:
                lst: os.stat_result | None = os.lstat(path)
            except OSError:
                lst = None
            if lst is not None and stat.S_ISLNK(lst.st_mode):
                yield from self._bad_link(path, lst, arg, None, exc)
            elif lst is not None or not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
                yield self._problem(path, shown, None, _describe(exc))  # e.g. permission denied
            elif _MAGIC.search(arg):  # only now: a name that exists literally is never a glob
                yield from self._glob(arg, shown)
            else:
                self.stats.missing_args.append(shown)
            return
        if stat.S_ISDIR(st.st_mode):
            yield from self._walk(path, st, shown, root=path, display="" if self.solo else _prefix(arg), states=None)
        elif not self._is_sidecar(path, os.path.basename(path), lambda: self._stems_of_parent(path)):
            yield from self._file(path, st, shown, None)

    def _glob(self, pattern: str, shown: str) -> Iterator[Discovered]:
        split = _split_glob(pattern)
        if split is None:
            self.stats.missing_args.append(shown)
            return
        base, compiled = split
        base_path = os.path.abspath(base or os.curdir)
        matches_before = self.matches
        try:
            st = os.stat(base_path)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            start = compiled.closure([0])
            if compiled.accept in start:  # "photos/**": the base folder itself matches
                self.matches += 1
                yield from self._walk(base_path, st, printable(base), root=base_path,
                                      display="" if self.solo else _prefix(base), states=None)
            else:
                yield from self._walk(
                    base_path, st, shown, root=None, display=base, states=start, pattern=compiled
                )
        if self.matches == matches_before:
            self.stats.missing_args.append(shown)

    # -- the walk ----------------------------------------------------------------------------

    def _walk(
        self,
        top: str,
        top_stat: os.stat_result,
        top_shown: str,
        *,
        root: str | None,
        display: str,
        states: frozenset[int] | None,
        pattern: _Pattern | None = None,
    ) -> Iterator[Discovered]:
        """Walk one folder argument (``states is None``) or the base folder of a glob."""
        stack: list[_Frame] = []
        on_path: set[_Key] = set()  # identities of the folders on the stack, to spot loops
        top_key = _key(top_stat, top)
        problem = self._enter(stack, on_path, top, top_key, display, root, states)
        if problem is not None:
            yield self._problem(top, top_shown, None, problem)
        while stack:
            frame = stack[-1]
            name = next(frame.names, None)
            if name is None:
                stack.pop()
                on_path.discard(frame.key)
                continue
            child = os.path.join(frame.path, name)
            shown_rel = _join_display(frame.display, name)
            hidden = is_hidden_name(name)

            as_file = as_dir = True
            inner: frozenset[int] = frozenset()
            if frame.states is not None:
                assert pattern is not None
                as_file, as_dir, inner = pattern.step(frame.states, name, hidden)
                if not (as_file or as_dir or inner):
                    # Cannot match: not even worth an lstat. Count it as hidden only if
                    # hiding is the reason, so the summary stays truthful.
                    if hidden and any(pattern.step(frame.states, name, False)):
                        self.stats.ignored_hidden += 1
                    continue
            elif hidden:
                self.stats.ignored_hidden += 1
                continue

            try:
                lst = os.lstat(child)
            except FileNotFoundError:
                continue  # deleted between listing and stat: nothing to report
            except OSError as exc:
                if as_file:
                    yield self._found_problem(child, shown_rel, frame.root, _describe(exc))
                continue
            if not hidden and _has_hidden_attribute(lst):
                # Hidden by attribute (Windows): the same rules as a hidden name.
                if frame.states is not None:
                    assert pattern is not None
                    as_file, as_dir, inner = pattern.step(frame.states, name, True)
                if frame.states is None or not (as_file or as_dir or inner):
                    self.stats.ignored_hidden += 1
                    continue

            st = lst
            if stat.S_ISLNK(lst.st_mode):
                if not self.follow_symlinks:
                    continue
                try:
                    st = os.stat(child)
                except OSError as exc:
                    if as_file:
                        yield from self._bad_link(child, lst, shown_rel, frame.root, exc)
                    continue

            if stat.S_ISDIR(st.st_mode):
                if frame.states is None:
                    sub_display, sub_root, sub_states = shown_rel, frame.root, None
                elif as_dir:  # a matched folder counts as if given as a folder argument (a glob may match many)
                    self.matches += 1
                    sub_display, sub_root, sub_states = shown_rel, child, None
                elif inner:
                    sub_display, sub_root, sub_states = shown_rel, None, inner
                else:
                    continue
                problem = self._enter(
                    stack, on_path, child, _key(st, child), sub_display, sub_root, sub_states
                )
                if problem is not None:
                    yield self._found_problem(child, shown_rel, frame.root, problem)
            elif as_file:
                if frame.states is not None:
                    self.matches += 1
                if not self._is_sidecar(child, name, frame.image_stems):
                    yield from self._file(child, st, printable(shown_rel), frame.root)

    def _enter(
        self,
        stack: list[_Frame],
        on_path: set[_Key],
        path: str,
        key: _Key,
        display: str,
        root: str | None,
        states: frozenset[int] | None,
    ) -> str | None:
        """Push a folder onto the walk; returns a problem line if it cannot be listed."""
        if os.path.normcase(path) in self.exclude_paths or key in self.exclude_keys:
            self.stats.ignored_hidden += 1
            return None
        if key in on_path:
            self.stats.symlink_loops += 1
            return None
        if key in self.unreadable:
            return None  # reported once already, however it is reached again
        # A glob walk does not skip a folder walked before: it must still see whether its
        # pattern matches anything in there (files are de-duplicated one by one anyway).
        if states is None and key in self.walked:
            self.stats.duplicates_suppressed += 1
            return None
        try:
            with os.scandir(path) as entries:
                # Sorted so runs are reproducible; names only, one folder per level, is all
                # that is ever held. The listing is closed at once so a deep tree never holds
                # one open descriptor per level.
                names = sorted(entry.name for entry in entries)
        except FileNotFoundError:
            return None  # removed while we walked
        except OSError as exc:
            self.unreadable.add(key)
            return f"cannot read folder: {_describe(exc)}"
        if states is None:
            self.walked.add(key)
        on_path.add(key)
        stack.append(_Frame(path, display, root, states, key, iter(names), names))
        return None

    # -- sidecars ----------------------------------------------------------------------------

    def _is_sidecar(self, path: str, name: str, stems: Callable[[], frozenset[str]]) -> bool:
        if self.sidecars is None or not self.sidecars.ignores(path, name, stems):
            return False
        self.stats.sidecars += 1
        return True

    def _stems_of_parent(self, path: str) -> frozenset[str]:
        # Files given one by one (a shell glob) come folder by folder: keep the last folder's stems only.
        parent = os.path.dirname(path)
        if self._parent_stems is None or self._parent_stems[0] != parent:
            try:
                names = os.listdir(parent)
            except OSError:
                names = []
            self._parent_stems = (parent, image_stems(names))
        return self._parent_stems[1]

    # -- reporting ---------------------------------------------------------------------------

    def _file(self, path: str, st: os.stat_result, shown: str, root: str | None) -> Iterator[Discovered]:
        if not self.seen.add(_key(st, path)):
            self.stats.duplicates_suppressed += 1
            return
        if stat.S_ISREG(st.st_mode):
            yield Discovered(path, shown, root, st.st_size, st.st_mtime_ns)
        else:
            # Never opened: opening a FIFO blocks until a writer appears, a device may never end.
            yield Discovered(path, shown, root, None, None, f"not a regular file ({_kind(st.st_mode)})")

    def _bad_link(
        self, path: str, lst: os.stat_result, shown_rel: str, root: str | None, exc: OSError
    ) -> Iterator[Discovered]:
        # Keyed by the link itself so a broken link reached twice is reported once.
        if not self.seen.add(_key(lst, path)):
            self.stats.duplicates_suppressed += 1
            return
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            problem = "broken symlink"
        else:
            if exc.errno == errno.ELOOP:
                self.stats.symlink_loops += 1
            problem = _describe(exc)
        yield Discovered(path, printable(shown_rel), root, None, None, problem)

    def _found_problem(self, path: str, shown_rel: str, root: str | None, problem: str) -> Discovered:
        return Discovered(path, printable(shown_rel), root, None, None, problem)

    @staticmethod
    def _problem(path: str, shown: str, root: str | None, problem: str) -> Discovered:
        return Discovered(path, shown, root, None, None, problem)


def discover(
    inputs: Sequence[str],
    *,
    stdin: TextIO | None = None,
    stats: DiscoveryStats | None = None,
    exclude: Sequence[str] = (),
    follow_symlinks: bool = True,
    sidecars: SidecarRule | None = None,
) -> Iterator[Discovered]:
    """Yield every file named by ``inputs`` exactly once, lazily and in a reproducible order.

    ``inputs``: files, folders (recursive), globs (``*``, ``?``, ``[..]``, ``**``; only when
    the argument does not exist literally), ``@list.txt`` (one entry per line, UTF-8, blank
    lines and ``#`` comments ignored, relative entries resolved against the current directory)
    and ``-`` (the same list format read from ``stdin``, default ``sys.stdin``).
    ``stats``: filled in as the generator runs (complete once it is exhausted).
    ``exclude``: folders never to descend into, such as the tool's own output folder.
    ``follow_symlinks``: whether symlinks met while walking are followed; when False they are
    skipped. A symlink given as an argument is always followed.
    ``sidecars``: when given, files it calls sidecars (``photo.jpg.xmp``, captions, ...) are dropped silently
    and counted in ``stats.sidecars``.
    """
    walker = _Discoverer(stats if stats is not None else DiscoveryStats(), exclude, follow_symlinks, stdin, sidecars)
    walker.solo = len(inputs) == 1
    yield from walker.run(inputs)
