"""The store: one SQLite database per output folder, the single source of truth every export is rebuilt from."""

from imgtag.store.db import FileRecord, JobState, Store, WorkKey
from imgtag.store.lock import StoreBusyError

__all__ = ["FileRecord", "JobState", "Store", "StoreBusyError", "WorkKey"]
