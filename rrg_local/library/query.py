"""Read-only queries over the index: status counts, photo listings by date and folder, the photo at a path,
the error list.

The CLI and the TUI call these; they never write. `date_range()` is pure and turns what a person types
("2024", "2024-06", "2024-06-03") into half-open ISO bounds that the `photos_taken_at` index serves.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import TypedDict

import sqlite_utils

from rrg_local.jobs import Jobs


class PhotoRow(TypedDict):
    id: int
    hash: str
    taken_at: str
    taken_at_source: str
    width: int
    height: int
    format: str
    camera: str | None
    missing: int
    path: str | None
    thumb: str


class ErrorRow(TypedDict):
    path: str
    kind: str
    reason: str
    at: str


def _parse_day(text: str, *, end: bool) -> str:
    """Lower bound (end=False) or exclusive upper bound (end=True) for a year, month or day."""
    text = text.strip()
    try:
        if len(text) == 4:
            year = int(text)
            return date(year + 1 if end else year, 1, 1).isoformat()
        if len(text) == 7:
            d = datetime.strptime(text, "%Y-%m").date()
            if end:
                d = date(d.year + d.month // 12, d.month % 12 + 1, 1)
            return d.isoformat()
        d = date.fromisoformat(text[:10])
    except ValueError as exc:
        raise ValueError(f"not a date: {text!r} (use YYYY, YYYY-MM or YYYY-MM-DD)") from exc
    if end:
        return date.fromordinal(d.toordinal() + 1).isoformat()
    return d.isoformat()


def date_range(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """Half-open [lo, hi) ISO bounds; `until` is inclusive of the whole day, month or year given.

    >>> date_range("2024-06", "2024-06")
    ('2024-06-01', '2024-07-01')
    >>> date_range(None, "2023")
    (None, '2024-01-01')
    """
    lo = _parse_day(since, end=False) if since else None
    hi = _parse_day(until, end=True) if until else None
    return lo, hi


def status(db: sqlite_utils.Database) -> dict:
    one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    last = db.execute("SELECT started_at, finished_at FROM scans ORDER BY id DESC LIMIT 1").fetchone()
    return {
        "photos": one("SELECT count(*) FROM photos WHERE missing = 0"),
        "missing": one("SELECT count(*) FROM photos WHERE missing = 1"),
        "paths": one("SELECT count(*) FROM paths WHERE missing = 0"),
        "errors": one("SELECT count(*) FROM errors"),
        "pending_jobs": Jobs(db).pending(),
        "last_scan": (last[1] or f"{last[0]} (interrupted)") if last else None,
    }


def list_photos(
    db: sqlite_utils.Database,
    *,
    since: str | None = None,
    until: str | None = None,
    folder: str | os.PathLike | None = None,
    include_missing: bool = False,
    limit: int | None = None,
) -> list[PhotoRow]:
    lo, hi = date_range(since, until)
    where, params = [], []
    if not include_missing:
        where.append("p.missing = 0")
    if lo:
        where.append("p.taken_at >= ?")
        params.append(lo)
    if hi:
        where.append("p.taken_at < ?")
        params.append(hi)
    path_filter = "1"
    if folder is not None:
        prefix = os.fsencode(os.path.abspath(folder)).rstrip(b"/") + b"/"
        path_filter = "substr(raw, 1, ?) = ?"
        where.append(f"EXISTS (SELECT 1 FROM paths WHERE photo_id = p.id AND {path_filter})")
        params += [len(prefix), prefix]
    sql = (
        "SELECT p.id, p.hash, p.taken_at, p.taken_at_source, p.width, p.height, p.format, p.camera, p.missing,"
        " (SELECT path FROM paths WHERE photo_id = p.id ORDER BY missing, raw LIMIT 1) AS path, p.thumb"
        f" FROM photos p {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY p.taken_at, p.id"
    )
    if limit:
        sql += f" LIMIT {int(limit)}"
    cols = list(PhotoRow.__annotations__)
    return [PhotoRow(**dict(zip(cols, row, strict=True))) for row in db.execute(sql, params).fetchall()]


def photo_at(db: sqlite_utils.Database, path: str | os.PathLike) -> int | None:
    """The indexed photo at this file path (made absolute, compared byte for byte), or None."""
    raw = os.fsencode(os.path.abspath(path))
    row = db.execute("SELECT photo_id FROM paths WHERE raw = ? AND missing = 0", [raw]).fetchone()
    return row[0] if row else None


def photo_file(db: sqlite_utils.Database, photo_id: int) -> Path | None:
    """A file the photo is at now, from its raw bytes (the stored `path` is for display: a name that is not
    UTF-8 shows its bytes as \\xNN there, and opening that string would miss the file), or None."""
    row = db.execute(
        "SELECT raw FROM paths WHERE photo_id = ? AND missing = 0 ORDER BY raw LIMIT 1", [photo_id]
    ).fetchone()
    return Path(os.fsdecode(row[0])) if row else None


def phashes(db: sqlite_utils.Database) -> list[tuple[int, str]]:
    """(photo id, perceptual hash) of every photo still on disk, for near-duplicate grouping."""
    return [(r[0], r[1]) for r in db.execute("SELECT id, phash FROM photos WHERE missing = 0 ORDER BY id")]


def list_errors(db: sqlite_utils.Database) -> list[ErrorRow]:
    rows = db.execute("SELECT path, kind, reason, at FROM errors ORDER BY path").fetchall()
    return [ErrorRow(path=r[0], kind=r[1], reason=r[2], at=r[3]) for r in rows]
