"""The crash-safe job table: per-photo work that later stages still owe (embedding, tagging, ...).

The scanner enqueues; workers `claim()` a batch, do the work, and `finish()` or `fail()` each job. A
process killed mid-batch leaves jobs in `running`; `recover()` (called when a worker starts) puts them
back to `pending`, so the next run resumes exactly where the last one stopped. One row per
(photo, kind): enqueueing twice is a no-op, re-queueing a done job makes it pending again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlite_utils

from rrg_local.db import utcnow

KIND_EMBED = "embed"  # compute the photo's retrieval embedding
KIND_TAG = "tag"  # run auto-tagging on the photo (again when concepts change)
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Job:
    id: int
    photo_id: int
    kind: str
    attempts: int


class Jobs:
    def __init__(self, db: sqlite_utils.Database):
        self.db = db

    def enqueue(self, photo_ids: Iterable[int], kind: str, *, again: bool = False) -> int:
        """Queue `kind` for each photo. `again=True` also re-queues finished or failed ones."""
        now = utcnow()
        rows = [(pid, kind, now) for pid in photo_ids]
        conflict = (
            "DO UPDATE SET state='pending', attempts=0, error=NULL, updated_at=excluded.updated_at "
            "WHERE state != 'running'"
            if again
            else "DO NOTHING"
        )
        before = self.db.conn.total_changes
        self.db.conn.executemany(
            f"INSERT INTO jobs (photo_id, kind, state, updated_at) VALUES (?, ?, 'pending', ?) "
            f"ON CONFLICT (photo_id, kind) {conflict}",
            rows,
        )
        return self.db.conn.total_changes - before

    def recover(self, kind: str | None = None) -> int:
        """Put jobs a dead process left `running` back to `pending`."""
        where, params = ("AND kind = ?", [kind]) if kind else ("", [])
        with self.db.conn:
            cur = self.db.execute(
                f"UPDATE jobs SET state='pending', updated_at=? WHERE state='running' {where}", [utcnow(), *params]
            )
        return cur.rowcount

    def claim(self, kind: str, limit: int) -> list[Job]:
        """Mark up to `limit` pending jobs of `kind` as running and return them (oldest first).

        The write lock is taken before the read, so two processes claiming at once (the watcher and
        `rrg tag`) never both get the same job.
        """
        with self.db.conn:
            if not self.db.conn.in_transaction:  # one already open has written, so it holds the lock
                self.db.conn.execute("BEGIN IMMEDIATE")
            rows = self.db.execute(
                "SELECT id, photo_id, kind, attempts FROM jobs WHERE kind = ? AND state = 'pending' "
                "ORDER BY id LIMIT ?",
                [kind, limit],
            ).fetchall()
            self.db.conn.executemany(
                "UPDATE jobs SET state='running', attempts=attempts+1, updated_at=? WHERE id=?",
                [(utcnow(), r[0]) for r in rows],
            )
        return [Job(id=r[0], photo_id=r[1], kind=r[2], attempts=r[3] + 1) for r in rows]

    def finish(self, job_ids: Iterable[int]) -> None:
        with self.db.conn:
            self.db.conn.executemany(
                "UPDATE jobs SET state='done', error=NULL, updated_at=? WHERE id=?", [(utcnow(), i) for i in job_ids]
            )

    def fail(self, job: Job, error: str) -> None:
        """Record a failure; the job is retried until it has failed MAX_ATTEMPTS times."""
        state = "failed" if job.attempts >= MAX_ATTEMPTS else "pending"
        with self.db.conn:
            self.db.execute(
                "UPDATE jobs SET state=?, error=?, updated_at=? WHERE id=?", [state, error, utcnow(), job.id]
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {state: n}} over all jobs."""
        out: dict[str, dict[str, int]] = {}
        for kind, state, n in self.db.execute("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state"):
            out.setdefault(kind, {})[state] = n
        return out

    def pending(self) -> int:
        return self.db.execute("SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')").fetchone()[0]
