"""Photo-library scanner: turns image files on disk into rows in `photos`, `paths` and `errors`.

`Scanner` is the only writer of those tables; `rrg index`, `rrg watch` and the TUI call it and never
touch their SQL. A full `scan()` walks the folders, skips files whose size and mtime are unchanged
(stat only), reads the rest in a thread pool (`reader.read_photo`), and writes results in the walk's
order in batched transactions, so a run killed at any point leaves a consistent index and the next run
finishes the job with the same result. After a folder has been walked completely, paths that were not
seen are marked missing (never deleted), except under folders that could not be listed. The watcher
uses the incremental entry points `scan_paths()`, `move()` and `mark_missing()`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from rrg_local import db as dbmod
from rrg_local.config import Settings
from rrg_local.jobs import KIND_EMBED, KIND_TAG, Jobs
from rrg_local.library.images import supported_extensions
from rrg_local.library.reader import FileError, PhotoFile, display_path, read_photo
from rrg_local.library.walk import Entry, RootUnavailable, Walker

# Errors that a rescan need not retry while the file's size and mtime stay the same.
STABLE_ERROR_KINDS = frozenset({"empty", "not_image", "truncated", "corrupt", "too_large"})
# Errors that say the content at a path is no longer the photo we had there.
CONTENT_ERROR_KINDS = STABLE_ERROR_KINDS
BATCH_FILES = 200
BATCH_SECONDS = 1.0


@dataclass
class ScanReport:
    scan_id: int = 0
    seen: int = 0  # candidate image files found
    new_photos: int = 0  # new content, decoded
    new_paths: int = 0  # known content at a new path (moved or copied)
    unchanged: int = 0  # stat matched: not read
    skipped: int = 0  # not an image extension
    known_errors: int = 0  # bad files already recorded and unchanged
    missing: int = 0  # paths newly marked missing
    errors: list[FileError] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # roots that could not be scanned
    interrupted: bool = False
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {
            "seen": self.seen,
            "new_photos": self.new_photos,
            "new_paths": self.new_paths,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "errors": len(self.errors),
            "known_errors": self.known_errors,
            "missing": self.missing,
        }


def _under(raw: bytes, prefixes: Sequence[bytes]) -> bool:
    return any(raw == p or raw.startswith(p.rstrip(b"/") + b"/") for p in prefixes)


def _prefix(raw: bytes) -> bytes:
    return raw.rstrip(b"/") + b"/"


class Scanner:
    def __init__(
        self,
        db: sqlite_utils.Database,
        settings: Settings,
        *,
        on_error: Callable[[FileError], None] | None = None,
        on_progress: Callable[[ScanReport], None] | None = None,
    ):
        self.db = db
        self.conn = db.conn
        self.settings = settings
        self.jobs = Jobs(db)
        self.on_error = on_error
        self.on_progress = on_progress
        self._extensions = supported_extensions()
        self._db_file = next((r[2] for r in db.execute("PRAGMA database_list") if r[1] == "main"), "")
        self._local = threading.local()
        self._readers: list = []
        self._readers_lock = threading.Lock()

    # ---- entry points -------------------------------------------------------------------------

    def scan(self, roots: Iterable[Path | str | bytes]) -> ScanReport:
        """Full scan of library folders: index new and changed files, mark vanished ones missing."""
        raw_roots = [self._raw(r) for r in roots]
        report = ScanReport()
        started = time.monotonic()
        report.scan_id = self._start_scan(raw_roots)
        try:
            for root in raw_roots:
                walker = Walker(self._extensions)
                try:
                    completed = self._ingest(walker.walk(root), report)
                except RootUnavailable as exc:
                    report.unavailable.append(str(exc))
                    continue
                finally:
                    report.skipped += walker.skipped
                if completed:
                    self._sweep(root, walker.unreadable_dirs, report)
        except BaseException:
            report.interrupted = True
            raise
        finally:
            report.seconds = time.monotonic() - started
            self._finish_scan(report)
            self._close_readers()
        return report

    def scan_paths(self, paths: Iterable[Path | str | bytes]) -> ScanReport:
        """Index specific files or folders (watcher events); paths that no longer exist become missing."""
        report = ScanReport(scan_id=self._current_scan_id())
        started = time.monotonic()
        walker = Walker(self._extensions)
        try:
            for raw in (self._raw(p) for p in paths):
                if not os.path.lexists(raw):
                    report.missing += self.mark_missing(raw)
                    continue
                try:
                    self._ingest(walker.walk(raw), report)
                except RootUnavailable:
                    report.missing += self.mark_missing(raw)
        finally:
            report.skipped += walker.skipped
            report.seconds = time.monotonic() - started
            self._close_readers()
        return report

    def move(self, src: Path | str | bytes, dest: Path | str | bytes) -> ScanReport:
        """A rename seen by the watcher: keep photo ids and re-point paths, then check the destination."""
        src_raw, dest_raw = self._raw(src), self._raw(dest)
        now = dbmod.utcnow()
        moved_from = self.conn.execute(
            "SELECT raw FROM paths WHERE raw = ? OR substr(raw, 1, ?) = ?",
            [src_raw, len(_prefix(src_raw)), _prefix(src_raw)],
        ).fetchall()
        affected: set[int] = set()
        for (old,) in moved_from:
            new = dest_raw + old[len(src_raw) :]
            replaced = self.conn.execute("SELECT photo_id FROM paths WHERE raw = ?", [new]).fetchone()
            if replaced:
                affected.add(replaced[0])
                self.conn.execute("DELETE FROM paths WHERE raw = ?", [new])
            self.conn.execute(
                "UPDATE paths SET raw = ?, path = ?, updated_at = ? WHERE raw = ?", [new, display_path(new), now, old]
            )
        self._refresh_missing(affected)
        self.conn.commit()
        # Stat-only for what moved intact; reads whatever changed on the way (atomic saves land here).
        return self.scan_paths([dest_raw])

    def mark_missing(self, raw: bytes | str | Path) -> int:
        """Mark a vanished file, or everything under a vanished folder, missing. Returns paths marked."""
        raw = self._raw(raw)
        rows = self.conn.execute(
            "SELECT raw, photo_id FROM paths WHERE missing = 0 AND (raw = ? OR substr(raw, 1, ?) = ?)",
            [raw, len(_prefix(raw)), _prefix(raw)],
        ).fetchall()
        self._set_missing(rows)
        self.conn.execute(
            "DELETE FROM errors WHERE raw = ? OR substr(raw, 1, ?) = ?", [raw, len(_prefix(raw)), _prefix(raw)]
        )
        self.conn.commit()
        return len(rows)

    def purge_missing(self) -> int:
        """Delete photos that have no path left, with their paths, jobs and thumbnails. Returns photos purged."""
        rows = self.conn.execute("SELECT id, thumb FROM photos WHERE missing = 1").fetchall()
        self.conn.executemany("DELETE FROM photos WHERE id = ?", [(r[0],) for r in rows])
        self.conn.execute("DELETE FROM paths WHERE missing = 1")
        self.conn.commit()
        for _, thumb in rows:
            try:
                (self.settings.thumbs_dir / thumb).unlink()
            except FileNotFoundError:
                pass
        return len(rows)

    # ---- the pipeline -------------------------------------------------------------------------

    def _ingest(self, items: Iterable[Entry | FileError], report: ScanReport) -> bool:
        """Read and record everything `items` yields; True when the walk ran to its end."""
        workers = self.settings.workers()
        inflight: deque[Future] = deque()
        seen_updates: list[bytes] = []
        last_commit = time.monotonic()
        pending_writes = 0

        def flush() -> None:
            nonlocal last_commit, pending_writes
            if seen_updates:
                self.conn.executemany(
                    "UPDATE paths SET seen_scan = ? WHERE raw = ?", [(report.scan_id, r) for r in seen_updates]
                )
                seen_updates.clear()
            self.conn.commit()
            last_commit, pending_writes = time.monotonic(), 0
            if self.on_progress:
                self.on_progress(report)

        def drain(block_until: int) -> None:
            nonlocal pending_writes
            while len(inflight) > block_until:
                self._record(inflight.popleft().result(), report)
                pending_writes += 1

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rrg-scan") as pool:
            try:
                for item in items:
                    if isinstance(item, FileError):
                        self._record(item, report)
                        pending_writes += 1
                    else:
                        report.seen += 1
                        if self._is_unchanged(item, report):
                            seen_updates.append(item.raw)
                        else:
                            inflight.append(pool.submit(self._read, item))
                            drain(workers * 4)
                    if pending_writes + len(seen_updates) >= BATCH_FILES or (
                        time.monotonic() - last_commit > BATCH_SECONDS
                    ):
                        flush()
                drain(0)
            finally:
                for fut in inflight:
                    fut.cancel()
                flush()
        return True

    def _read(self, entry: Entry) -> PhotoFile | FileError:
        return read_photo(
            entry.raw,
            entry.stat,
            thumbs_dir=self.settings.thumbs_dir,
            max_pixels=self.settings.max_pixels,
            thumb_size=self.settings.thumb_size,
            is_known=self._is_known,
        )

    def _is_unchanged(self, entry: Entry, report: ScanReport) -> bool:
        key = (entry.stat.st_size, entry.stat.st_mtime_ns)
        row = self.conn.execute("SELECT size, mtime_ns, missing FROM paths WHERE raw = ?", [entry.raw]).fetchone()
        if row and (row[0], row[1]) == key and not row[2]:
            report.unchanged += 1
            return True
        err = self.conn.execute("SELECT size, mtime_ns, kind FROM errors WHERE raw = ?", [entry.raw]).fetchone()
        if err and (err[0], err[1]) == key and err[2] in STABLE_ERROR_KINDS:
            self.conn.execute("UPDATE errors SET seen_scan = ? WHERE raw = ?", [report.scan_id, entry.raw])
            report.known_errors += 1
            return True
        return False

    def _record(self, result: PhotoFile | FileError, report: ScanReport) -> None:
        if isinstance(result, FileError):
            self._record_error(result, report)
            return
        photo = self._photo_by_hash(result.hash)
        if photo is None and result.meta is None:
            # Known when the worker looked, purged since: read it again, decoding this time.
            again = read_photo(
                result.raw,
                os.stat(result.raw),
                thumbs_dir=self.settings.thumbs_dir,
                max_pixels=self.settings.max_pixels,
                thumb_size=self.settings.thumb_size,
                is_known=lambda _h: False,
            )
            self._record(again, report)
            return
        now = dbmod.utcnow()
        if photo is None:
            m = result.meta
            cur = self.conn.execute(
                "INSERT INTO photos (hash, size, width, height, format, taken_at, taken_at_source, orientation,"
                " camera, phash, thumb, missing, added_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?,?)"
                " ON CONFLICT (hash) DO NOTHING",
                [
                    result.hash,
                    result.size,
                    m.width,
                    m.height,
                    m.format,
                    m.taken_at,
                    m.taken_at_source,
                    m.orientation,
                    m.camera,
                    m.phash,
                    m.thumb,
                    now,
                    now,
                ],
            )
            if cur.rowcount:
                photo_id = cur.lastrowid
                self.jobs.enqueue([photo_id], KIND_EMBED)
                self.jobs.enqueue([photo_id], KIND_TAG)
                report.new_photos += 1
            else:  # another scan (the watcher's, `rrg index`'s) recorded it after the read above
                photo = self._photo_by_hash(result.hash)
        if photo is not None:
            photo_id = photo[0]
            if photo[1]:
                self.conn.execute("UPDATE photos SET missing = 0, updated_at = ? WHERE id = ?", [now, photo_id])
        old = self.conn.execute("SELECT photo_id FROM paths WHERE raw = ?", [result.raw]).fetchone()
        if photo is not None and (old is None or old[0] != photo_id):
            report.new_paths += 1
        self.conn.execute(
            "INSERT INTO paths (raw, path, photo_id, size, mtime_ns, missing, seen_scan, updated_at)"
            " VALUES (?,?,?,?,?,0,?,?) ON CONFLICT (raw) DO UPDATE SET photo_id=excluded.photo_id,"
            " size=excluded.size, mtime_ns=excluded.mtime_ns, missing=0, seen_scan=excluded.seen_scan,"
            " updated_at=excluded.updated_at",
            [result.raw, display_path(result.raw), photo_id, result.size, result.mtime_ns, report.scan_id, now],
        )
        if old and old[0] != photo_id:
            self._refresh_missing({old[0]})
        self.conn.execute("DELETE FROM errors WHERE raw = ?", [result.raw])

    def _photo_by_hash(self, digest: str) -> tuple[int, int] | None:
        """(id, missing) of the photo with these bytes, if recorded."""
        return self.conn.execute("SELECT id, missing FROM photos WHERE hash = ?", [digest]).fetchone()

    def _record_error(self, err: FileError, report: ScanReport) -> None:
        report.errors.append(err)
        self.conn.execute(
            "INSERT INTO errors (raw, path, kind, reason, size, mtime_ns, seen_scan, at) VALUES (?,?,?,?,?,?,?,?)"
            " ON CONFLICT (raw) DO UPDATE SET kind=excluded.kind, reason=excluded.reason, size=excluded.size,"
            " mtime_ns=excluded.mtime_ns, seen_scan=excluded.seen_scan, at=excluded.at",
            [err.raw, err.path, err.kind, err.reason, err.size, err.mtime_ns, report.scan_id, dbmod.utcnow()],
        )
        if err.kind in CONTENT_ERROR_KINDS or err.kind == "vanished":
            rows = self.conn.execute(
                "SELECT raw, photo_id FROM paths WHERE raw = ? AND missing = 0", [err.raw]
            ).fetchall()
            report.missing += len(rows)
            self._set_missing(rows)
        else:
            # Unreadable for now, or mid-write: the photo we had there may still be there.
            self.conn.execute("UPDATE paths SET seen_scan = ? WHERE raw = ?", [report.scan_id, err.raw])
        if self.on_error:
            self.on_error(err)

    def _sweep(self, root: bytes, unreadable: Sequence[bytes], report: ScanReport) -> None:
        """After a complete walk of `root`: what was not seen is gone (outside unlistable folders)."""
        params = [root, len(_prefix(root)), _prefix(root), report.scan_id]
        rows = self.conn.execute(
            "SELECT raw, photo_id FROM paths WHERE (raw = ? OR substr(raw, 1, ?) = ?) AND seen_scan < ?"
            " AND missing = 0",
            params,
        ).fetchall()
        rows = [r for r in rows if not _under(r[0], unreadable)]
        self._set_missing(rows)
        report.missing += len(rows)
        stale = self.conn.execute(
            "SELECT raw FROM errors WHERE (raw = ? OR substr(raw, 1, ?) = ?) AND seen_scan < ?", params
        ).fetchall()
        self.conn.executemany(
            "DELETE FROM errors WHERE raw = ?", [(r[0],) for r in stale if not _under(r[0], unreadable)]
        )
        self.conn.commit()

    # ---- helpers ------------------------------------------------------------------------------

    def _set_missing(self, rows: Sequence[tuple[bytes, int]]) -> None:
        now = dbmod.utcnow()
        self.conn.executemany(
            "UPDATE paths SET missing = 1, updated_at = ? WHERE raw = ?", [(now, r[0]) for r in rows]
        )
        self._refresh_missing({r[1] for r in rows})

    def _refresh_missing(self, photo_ids: set[int]) -> None:
        """A photo is missing exactly when none of its paths exists."""
        now = dbmod.utcnow()
        self.conn.executemany(
            "UPDATE photos SET missing = NOT EXISTS (SELECT 1 FROM paths WHERE photo_id = photos.id AND missing = 0),"
            " updated_at = ? WHERE id = ?",
            [(now, pid) for pid in photo_ids],
        )

    def _is_known(self, digest: str) -> bool:
        """Runs in worker threads, each with its own read-only connection (WAL readers never block)."""
        if not self._db_file:
            return False
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = dbmod.connect(self._db_file, readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn.execute("SELECT 1 FROM photos WHERE hash = ?", [digest]).fetchone() is not None

    def _close_readers(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._local = threading.local()

    def _start_scan(self, roots: list[bytes]) -> int:
        cur = self.conn.execute(
            "INSERT INTO scans (roots, started_at) VALUES (?, ?)",
            [json.dumps([display_path(r) for r in roots]), dbmod.utcnow()],
        )
        self.conn.commit()
        return cur.lastrowid

    def _finish_scan(self, report: ScanReport) -> None:
        self.conn.execute(
            "UPDATE scans SET finished_at = ?, counts = ? WHERE id = ?",
            [None if report.interrupted else dbmod.utcnow(), json.dumps(report.counts()), report.scan_id],
        )
        self.conn.commit()

    def _current_scan_id(self) -> int:
        row = self.conn.execute("SELECT max(id) FROM scans").fetchone()
        return row[0] or 0

    @staticmethod
    def _raw(path: Path | str | bytes) -> bytes:
        raw = path if isinstance(path, bytes) else os.fsencode(os.path.abspath(path))
        return os.path.abspath(raw) if isinstance(path, bytes) else raw
