"""Database access for TUI workers: one short-lived connection per worker, opened in its own thread.

SQLite connections belong to the thread that made them, and the library runs in WAL mode, so each
thread worker opens the file, does its work through the rrg_local APIs, and closes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlite_utils

from rrg_local.config import Settings
from rrg_local.db import open_db


@contextmanager
def opened(settings: Settings) -> Iterator[sqlite_utils.Database]:
    db = open_db(settings.db_path)
    try:
        yield db
    finally:
        db.close()
