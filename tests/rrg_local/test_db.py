import pytest

from rrg_local.db import MIGRATIONS, open_db


def test_open_db_migrates_once_and_uses_wal(tmp_path):
    path = tmp_path / "lib.db"
    db = open_db(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"photos", "paths", "errors", "jobs", "scans"} <= set(db.table_names())
    applied = [r[0] for r in db.execute("SELECT name FROM _migrations")]
    assert applied == [name for name, _ in MIGRATIONS]
    db.close()
    again = open_db(path)  # reopening applies nothing twice (a second CREATE TABLE would raise)
    assert [r[0] for r in again.execute("SELECT name FROM _migrations")] == applied


def test_in_memory_db_has_the_schema():
    db = open_db(None)
    assert "photos" in db.table_names()


def _hold_write_lock(path):
    """A rollback-journal connection in the middle of a write: what a second process's WAL switch collides with."""
    import sqlite3

    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO other VALUES (1)")
    return other


def test_wal_switch_waits_out_a_writer_sqlite_would_refuse_at_once(tmp_path):
    """SQLite's busy timeout does not cover this case, so without the retry open_db fails with 'database is locked'."""
    import sqlite3
    import threading

    from rrg_local.db import connect

    path = tmp_path / "lib.db"
    other = _hold_write_lock(path)
    plain = connect(path)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        plain.execute("PRAGMA journal_mode = WAL")  # the behaviour enable_wal exists for
    plain.close()
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    db = open_db(path)
    release.join()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "photos" in db.table_names() and db.execute("SELECT x FROM other").fetchall() == [(1,)]


def test_wal_switch_gives_up_after_its_timeout(tmp_path):
    import sqlite3
    import time

    from rrg_local.db import connect, enable_wal

    path = tmp_path / "lib.db"
    other = _hold_write_lock(path)
    conn = connect(path)
    start = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(conn, timeout=0.3)
    assert 0.1 < time.monotonic() - start < 3
    other.execute("COMMIT")
    assert enable_wal(conn) == "wal"


def _open_after(barrier, path):
    from rrg_local.db import open_db

    barrier.wait()
    open_db(path).close()


def test_processes_opening_a_new_library_at_once_migrate_it_once(tmp_path):
    """The watcher and `rrg status` may open a new library.db together: neither may fail on the other's tables."""
    import multiprocessing

    from rrg_local.db import MIGRATIONS, open_db

    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        path = tmp_path / f"lib{round_}.db"
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_after, args=(barrier, path)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
        names = [r[0] for r in open_db(path).execute("SELECT name FROM _migrations ORDER BY name").fetchall()]
        assert names == [name for name, _ in MIGRATIONS]
