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
