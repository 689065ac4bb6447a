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
