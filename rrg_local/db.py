"""The SQLite store: `open_db()` and the numbered schema migrations. The only module with DDL.

Every other module receives an open `sqlite_utils.Database`. Migrations are plain functions applied in
order on open and recorded in `_migrations`, so an old library file upgrades itself. The database runs
in WAL mode so the watcher can write while the CLI or TUI reads.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]


def utcnow() -> str:
    """Timestamps are ISO-8601 UTC strings, second precision; they sort as text."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _m001_library(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
        CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,          -- sha256 of the file's bytes: the photo's identity
            size INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            format TEXT NOT NULL,
            taken_at TEXT NOT NULL,             -- local capture time, ISO 8601 (EXIF, else file mtime)
            taken_at_source TEXT NOT NULL,      -- 'exif' or 'mtime'
            orientation INTEGER NOT NULL DEFAULT 1,
            camera TEXT,
            phash TEXT NOT NULL,                -- 64-bit DCT perceptual hash, 16 hex digits
            thumb TEXT NOT NULL,                -- path relative to the thumbnail cache
            missing INTEGER NOT NULL DEFAULT 0, -- 1 when no path of it exists any more
            added_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX photos_taken_at ON photos(taken_at);
        CREATE INDEX photos_missing ON photos(id) WHERE missing = 1;

        CREATE TABLE paths (
            raw BLOB PRIMARY KEY,               -- os.fsencode(path): exact, also for non-UTF-8 names
            path TEXT NOT NULL,                 -- for display and folder filters
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            missing INTEGER NOT NULL DEFAULT 0,
            seen_scan INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX paths_photo ON paths(photo_id);
        CREATE INDEX paths_path ON paths(path);

        CREATE TABLE errors (
            raw BLOB PRIMARY KEY,
            path TEXT NOT NULL,
            kind TEXT NOT NULL,                 -- corrupt, truncated, empty, not_image, too_large, ...
            reason TEXT NOT NULL,
            size INTEGER,
            mtime_ns INTEGER,
            seen_scan INTEGER NOT NULL DEFAULT 0,
            at TEXT NOT NULL
        );

        CREATE TABLE scans (
            id INTEGER PRIMARY KEY,
            roots TEXT NOT NULL,                -- JSON list
            started_at TEXT NOT NULL,
            finished_at TEXT,                   -- NULL: interrupted or still running
            counts TEXT                         -- JSON object
        );

        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending', -- pending, running, done, failed
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            updated_at TEXT NOT NULL,
            UNIQUE (photo_id, kind)
        );
        CREATE INDEX jobs_kind_state ON jobs(kind, state);
        """,
    )


def _m002_concepts(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
        CREATE TABLE concepts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,      -- lower-cased name: names match case-insensitively
            category TEXT NOT NULL,
            coarse TEXT NOT NULL DEFAULT '',
            detailed TEXT NOT NULL DEFAULT '',
            description_source TEXT NOT NULL DEFAULT 'none', -- speaker, user, none
            threshold REAL,                     -- calibrated stage-2 threshold; NULL: the default
            version INTEGER NOT NULL DEFAULT 1, -- bumped when what the tagger uses changes
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        CREATE TABLE concept_photos (
            concept_id INTEGER NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            role TEXT NOT NULL,                 -- reference, confirmed, negative
            added_at TEXT NOT NULL,
            PRIMARY KEY (concept_id, photo_id)
        );
        CREATE INDEX concept_photos_photo ON concept_photos(photo_id);

        CREATE TABLE descriptions (
            id INTEGER PRIMARY KEY,
            concept_id INTEGER NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
            coarse TEXT NOT NULL,
            detailed TEXT NOT NULL,
            source_photo_id INTEGER,
            score REAL,                         -- mean reference-game reward; NULL when not played
            games TEXT,                         -- JSON: per game, the listener's probabilities
            chosen INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );

        CREATE TABLE embeddings (
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            embedder TEXT NOT NULL,
            vector BLOB NOT NULL,               -- float32, L2-normalised
            PRIMARY KEY (photo_id, embedder)
        );

        CREATE TABLE tags (
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            concept_id INTEGER NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
            status TEXT NOT NULL,               -- suggested, confirmed, rejected
            score REAL,                         -- stage-2 probability
            stage1 REAL,                        -- stage-1 similarity
            reasoning TEXT,
            model TEXT,
            concept_version INTEGER,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (photo_id, concept_id)
        );
        CREATE INDEX tags_concept ON tags(concept_id, status);
        """,
    )


def _m003_calibrations(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
        CREATE TABLE calibrations (
            concept_id INTEGER PRIMARY KEY REFERENCES concepts(id) ON DELETE CASCADE,
            key TEXT NOT NULL,                  -- what the scores depend on (model, concepts, photos)
            threshold REAL NOT NULL,            -- the concept's own stage-2 threshold
            positives TEXT NOT NULL,            -- JSON: [[photo id, score], ...] on its own photos
            negatives TEXT NOT NULL,            -- JSON: the same on photos known not to show it
            created_at TEXT NOT NULL
        );
        """,
    )


def _m004_tag_sure(db: sqlite_utils.Database) -> None:
    # A suggestion stage 1 alone decided (`tag_sure_margin`): its margin over every other concept, so that a
    # reviewer sees why a photo with a low stage-2 score was tagged. NULL: stage 2 decided.
    db.conn.execute("ALTER TABLE tags ADD COLUMN sure REAL")


def _m005_scene_checks(db: sqlite_utils.Database) -> None:
    # Whether a photo was taken in a scene, as a model judged it (`Asker.scene_check`), kept so that a question
    # about the whole library ("Show me photos at the beach") never asks the model twice about one photo.
    _script(
        db,
        """
        CREATE TABLE scene_checks (
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            scene TEXT NOT NULL,
            found TEXT,                         -- "asked" / "named" (how the model said so), NULL: not there
            created_at TEXT NOT NULL,
            PRIMARY KEY (photo_id, model, scene)
        );
        """,
    )


def _m006_job_owner(db: sqlite_utils.Database) -> None:
    # The process holding a running job (`jobs.process_id`), so that a worker starting beside a live one puts
    # back only what dead processes left running. NULL: none recorded (a job claimed before this column).
    db.conn.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_library", _m001_library),
    ("002_concepts", _m002_concepts),
    ("003_calibrations", _m003_calibrations),
    ("004_tag_sure", _m004_tag_sure),
    ("005_scene_checks", _m005_scene_checks),
    ("006_job_owner", _m006_job_owner),
]


def _script(db: sqlite_utils.Database, sql: str) -> None:
    """Run a migration's statements inside the caller's transaction (`executescript` would commit it first)."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.conn.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {statement.strip()[:80]}")


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations not yet recorded; each one in its own transaction. Returns their names.

    Each one takes the write lock (`BEGIN IMMEDIATE`) before it checks whether it is recorded, so two processes
    opening a new library at once (the watcher and `rrg status`) apply it once: the second waits, then skips it.
    """
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            if db.conn.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone() is None:
                fn(db)
                db.conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", [name, utcnow()])
                applied.append(name)
            db.conn.commit()
        except BaseException:
            db.conn.rollback()
            raise
    return applied


BUSY_TIMEOUT_MS = 10000


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """A raw connection with the pragmas every connection of ours needs."""
    if readonly:
        conn = sqlite3.connect(f"file:{Path(path).as_posix()}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def enable_wal(conn: sqlite3.Connection, *, timeout: float = BUSY_TIMEOUT_MS / 1000) -> str:
    """Switch the file to WAL mode, waiting out other connections doing the same; the mode it is in after.

    SQLite answers "database is locked" at once, without waiting out the busy timeout, when this
    connection holds a read lock and another holds the write lock: exactly what happens when two
    processes open a new library together and both switch it to WAL. So the switch retries until
    `timeout`, then the last error stands.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def open_db(path: Path | str | None = None) -> sqlite_utils.Database:
    """Open (creating if needed) the library database, in WAL mode, migrated to the latest schema.

    `path=None` gives an in-memory database (tests of pure row logic).
    """
    if path is None:
        db = sqlite_utils.Database(memory=True)
        db.execute("PRAGMA foreign_keys = ON")
    else:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite_utils.Database(connect(path))
        enable_wal(db.conn)
        db.execute("PRAGMA synchronous = NORMAL")
    migrate(db)
    return db
