"""The work folder shared by the driver and the workers: Parquet manifest shards in, Parquet result shards out.

    <work-dir>/manifest/<plan-id>/part-00000.parquet   job_id, sha256, display, source (path bytes), store_id
    <work-dir>/results/<uuid>.parquet                  one row per job: status, fields, error, usage, cost,
                                                       attempt count and the attempt log (JSON)

A result shard is written under a hidden temporary name and then moved into place, so a reader never sees
half a shard (a local rename is atomic; on object stores a PUT is). Readers skip names starting with '.'.
Only pyarrow is needed here, never Ray.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

MANIFEST_SCHEMA = pa.schema([
    ("job_id", pa.int64()),
    ("sha256", pa.string()),
    ("display", pa.string()),
    ("source", pa.binary()),   # os.fsencode(path): file names need not be UTF-8
    ("store_id", pa.string()),
])

RESULT_SCHEMA = pa.schema([
    ("job_id", pa.int64()),
    ("store_id", pa.string()),
    ("sha256", pa.string()),
    ("display", pa.string()),
    ("status", pa.string()),          # ok | failed | pending (not settled: fatal stop, file changed)
    ("fields", pa.string()),          # JSON of the validated fields, ok only
    ("error_type", pa.string()),
    ("error_message", pa.string()),
    ("request_id", pa.string()),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("cache_creation_input_tokens", pa.int64()),
    ("cache_read_input_tokens", pa.int64()),
    ("cost_usd", pa.float64()),
    ("attempts", pa.int64()),
    ("attempt_log", pa.string()),     # JSON list: one object per request, as the local engine records them
    ("fatal", pa.string()),           # the run must stop (bad key, unknown model, out of credits): why
])

MANIFEST_ROWS_PER_SHARD = 1000


@dataclass(frozen=True)
class WorkFolder:
    uri: str

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        fs, root = pafs.FileSystem.from_uri(self.uri) if "://" in self.uri else (pafs.LocalFileSystem(), self.uri)
        return fs, root.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self._fs()[1], *parts])

    def manifest_dir(self, plan_id: str) -> str:
        return self.path("manifest", plan_id)

    def results_dir(self) -> str:
        return self.path("results")

    def prepare(self) -> None:
        fs, _ = self._fs()
        fs.create_dir(self.results_dir(), recursive=True)

    def dataset_path(self, path: str) -> str:
        """A path Ray Data can read: the URI form for remote filesystems."""
        if "://" not in self.uri:
            return path
        scheme = self.uri.split("://", 1)[0]
        return f"{scheme}://{path}"

    # -- manifest ----------------------------------------------------------------------------------

    def manifest_writer(self, plan_id: str, rows_per_shard: int = MANIFEST_ROWS_PER_SHARD) -> ManifestWriter:
        fs, _ = self._fs()
        folder = self.manifest_dir(plan_id)
        fs.create_dir(folder, recursive=True)
        return ManifestWriter(fs, folder, rows_per_shard)

    def remove_manifests(self) -> None:
        """Earlier plans are obsolete once a new one is written from the store (the store decides)."""
        fs, _ = self._fs()
        info = fs.get_file_info(self.path("manifest"))
        if info.type == pafs.FileType.NotFound:
            return
        fs.delete_dir_contents(self.path("manifest"), missing_dir_ok=True)

    # -- results -----------------------------------------------------------------------------------

    def write_results(self, rows: list[dict[str, Any]]) -> str:
        """Write one result shard atomically; returns its file name."""
        fs, _ = self._fs()
        name = f"{uuid.uuid4().hex}.parquet"
        _write_atomic(fs, f"{self.results_dir()}/{name}", pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
        return name

    def result_names(self) -> list[str]:
        fs, _ = self._fs()
        selector = pafs.FileSelector(self.results_dir(), allow_not_found=True)
        names = [info.base_name for info in fs.get_file_info(selector) if info.type == pafs.FileType.File]
        return sorted(n for n in names if n.endswith(".parquet") and not n.startswith("."))

    def read_results(self, name: str) -> list[dict[str, Any]]:
        fs, _ = self._fs()
        with fs.open_input_file(f"{self.results_dir()}/{name}") as handle:
            return pq.read_table(handle, schema=RESULT_SCHEMA).to_pylist()


class ManifestWriter:
    """Streams the pending work into shards of `rows_per_shard` rows (memory stays flat at any size)."""

    def __init__(self, fs: pafs.FileSystem, folder: str, rows_per_shard: int) -> None:
        self.fs, self.folder, self.rows_per_shard = fs, folder, rows_per_shard
        self.paths: list[str] = []
        self.total = 0
        self._chunk: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        self._chunk.append(row)
        self.total += 1
        if len(self._chunk) >= self.rows_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self._chunk:
            return
        path = f"{self.folder}/part-{len(self.paths):05d}.parquet"
        _write_atomic(self.fs, path, pa.Table.from_pylist(self._chunk, schema=MANIFEST_SCHEMA))
        self.paths.append(path)
        self._chunk = []


def _write_atomic(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    folder, _, name = path.rpartition("/")
    temp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    with fs.open_output_stream(temp) as out:
        pq.write_table(table, out)
    fs.move(temp, path)
