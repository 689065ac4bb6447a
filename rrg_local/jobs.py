"""The crash-safe job table: per-photo work that later stages still owe (embedding, tagging, ...).

The scanner enqueues; workers `claim()` a batch, do the work, and `finish()` or `fail()` each job. A
process killed mid-batch leaves jobs in `running`; `recover()` (called when a worker starts) puts them
back to `pending`, so the next run resumes exactly where the last one stopped. Each running job records
the process holding it (`process_id`), so a worker starting beside a live one (`rrg tag` while the watcher
tags) leaves that one's jobs alone. One row per (photo, kind): enqueueing twice is a no-op, re-queueing a
done job makes it pending again.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from rrg_local.db import utcnow

KIND_EMBED = "embed"  # compute the photo's retrieval embedding
KIND_TAG = "tag"  # run auto-tagging on the photo (again when concepts change)
MAX_ATTEMPTS = 3


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), None where there is no such file."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_id(pid: int | None = None) -> str:
    """`host:pid:start` of a process (this one by default); start is its start time since boot where /proc
    says (Linux), so that a new process given a dead one's pid is not taken for it."""
    pid = os.getpid() if pid is None else pid
    stat = _proc_stat(pid)
    return f"{socket.gethostname()}:{pid}:{stat[19] if stat else ''}"


def is_running(owner: str | None) -> bool:
    """Whether the process `owner` (a `process_id`) still runs. One on another machine, or one no longer
    checkable, counts as gone: its jobs are put back, as before owners were recorded."""
    if not owner or os.name != "posix":
        return False
    host, pid, start = owner.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, another user's
    stat = _proc_stat(int(pid))
    if stat is None:  # no /proc (macOS): the pid alone says
        return not start
    return stat[0] != "Z" and stat[19] == start  # a zombie has stopped working


@dataclass(frozen=True)
class Job:
    id: int
    photo_id: int
    kind: str
    attempts: int


class Jobs:
    def __init__(self, db: sqlite_utils.Database):
        self.db = db

    def _write_lock(self) -> None:
        """Take the write lock before reading what a write will depend on (inside `with self.db.conn:`)."""
        if not self.db.conn.in_transaction:  # one already open has written, so it holds the lock
            self.db.conn.execute("BEGIN IMMEDIATE")

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
        """Put `running` jobs back to `pending`: those a dead process left and this process's own (what it
        claimed and will not do); those another live process holds stay its."""
        where, params = ("AND kind = ?", [kind]) if kind else ("", [])
        me, back = process_id(), 0
        with self.db.conn:
            self._write_lock()
            owners = self.db.execute(f"SELECT DISTINCT owner FROM jobs WHERE state='running' {where}", params)
            for (owner,) in owners.fetchall():
                if owner == me or not is_running(owner):
                    back += self.db.execute(
                        f"UPDATE jobs SET state='pending', owner=NULL, updated_at=? "
                        f"WHERE state='running' AND owner IS ? {where}",
                        [utcnow(), owner, *params],
                    ).rowcount
        return back

    def claim(self, kind: str, limit: int) -> list[Job]:
        """Mark up to `limit` pending jobs of `kind` as running and return them (oldest first).

        The write lock is taken before the read, so two processes claiming at once (the watcher and
        `rrg tag`) never both get the same job.
        """
        with self.db.conn:
            self._write_lock()
            rows = self.db.execute(
                "SELECT id, photo_id, kind, attempts FROM jobs WHERE kind = ? AND state = 'pending' "
                "ORDER BY id LIMIT ?",
                [kind, limit],
            ).fetchall()
            me = process_id()
            self.db.conn.executemany(
                "UPDATE jobs SET state='running', owner=?, attempts=attempts+1, updated_at=? WHERE id=?",
                [(me, utcnow(), r[0]) for r in rows],
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
