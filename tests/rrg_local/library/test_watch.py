"""The watcher on a real folder with real inotify events and a real SQLite file."""

import os
import threading
import time
from dataclasses import replace

import pytest

from rrg_local.db import connect, open_db
from rrg_local.library.scan import Scanner
from rrg_local.library.watch import Watcher


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def watched(tmp_path, settings, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1)
    make_jpeg(lib / "sub" / "b.jpg", 2)
    settings = replace(settings, debounce_s=0.3)
    db = open_db(settings.db_path)
    reports = []
    watcher = Watcher(
        Scanner(db, settings),
        [lib],
        debounce_s=0.3,
        rescan_interval_s=0,
        on_report=lambda what, r: reports.append((what, r)),
    )
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    assert watcher.ready.wait(10)
    reader = connect(settings.db_path, readonly=True)
    q = lambda sql, p=(): reader.execute(sql, p).fetchall()  # noqa: E731
    yield lib, q, reports
    stop.set()
    thread.join(10)
    reader.close()
    db.close()


def test_new_moved_and_deleted_files(watched, make_jpeg):
    lib, q, _ = watched
    assert q("SELECT count(*) FROM photos")[0][0] == 2
    make_jpeg(lib / "new.jpg", 3)
    assert wait_for(lambda: q("SELECT count(*) FROM photos")[0][0] == 3)
    (pid,) = q("SELECT photo_id FROM paths WHERE path LIKE '%/a.jpg'")[0]
    os.rename(lib / "a.jpg", lib / "sub" / "a-renamed.jpg")
    assert wait_for(lambda: q("SELECT photo_id FROM paths WHERE path LIKE '%a-renamed.jpg'") == [(pid,)])
    assert q("SELECT count(*) FROM paths WHERE path LIKE '%/a.jpg'")[0][0] == 0
    os.remove(lib / "new.jpg")
    assert wait_for(lambda: q("SELECT count(*) FROM photos WHERE missing = 1")[0][0] == 1)
    assert q("SELECT count(*) FROM photos WHERE missing = 0")[0][0] == 2


def test_folder_move_keeps_photo_ids(watched):
    lib, q, _ = watched
    before = dict(q("SELECT photo_id, path FROM paths"))
    os.rename(lib / "sub", lib / "renamed-sub")
    assert wait_for(lambda: q("SELECT count(*) FROM paths WHERE path LIKE '%renamed-sub/b.jpg'")[0][0] == 1)
    after = dict(q("SELECT photo_id, path FROM paths WHERE missing = 0"))
    assert set(after) == set(before)
    assert q("SELECT count(*) FROM photos WHERE missing = 1")[0][0] == 0


def test_atomic_save_is_one_event_and_the_temp_file_is_never_indexed(watched, make_jpeg):
    lib, q, reports = watched
    (old_pid,) = q("SELECT photo_id FROM paths WHERE path LIKE '%/a.jpg'")[0]
    reports.clear()
    tmp = make_jpeg(lib / "a.tmp-save.jpg", 42)  # an editor writes a temp file with an image extension...
    with open(tmp, "r+b") as fh:
        fh.seek(0, 2)
        fh.write(b"\0")  # ...in more than one write
    os.replace(tmp, lib / "a.jpg")  # ...and renames it over the photo
    assert wait_for(lambda: q("SELECT count(*) FROM photos")[0][0] == 3)
    time.sleep(0.8)
    reads = sum(r.new_photos + r.new_paths + len(r.errors) for _, r in reports)
    assert reads == 1
    assert q("SELECT count(*) FROM paths WHERE path LIKE '%tmp-save%'")[0][0] == 0
    assert q("SELECT count(*) FROM errors")[0][0] == 0
    new_pid = q("SELECT photo_id FROM paths WHERE path LIKE '%/a.jpg'")[0][0]
    assert new_pid != old_pid
    assert q("SELECT missing FROM photos WHERE id = ?", [old_pid]) == [(1,)]


def test_a_corrupt_file_appearing_becomes_an_error_row(watched):
    lib, q, _ = watched
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not the rest of a jpeg")
    assert wait_for(lambda: q("SELECT kind FROM errors WHERE path LIKE '%broken.jpg'") != [])
    assert q("SELECT kind FROM errors")[0][0] in ("corrupt", "truncated")
    assert q("SELECT count(*) FROM photos")[0][0] == 2


def test_periodic_rescan_catches_events_the_os_dropped(tmp_path, settings, make_jpeg, monkeypatch):
    from rrg_local.library import watch

    monkeypatch.setattr(watch._Enqueue, "on_any_event", lambda self, event: None)  # every event lost
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1)
    db = open_db(settings.db_path)
    watcher = Watcher(Scanner(db, settings), [lib], debounce_s=0.1, rescan_interval_s=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert watcher.ready.wait(10)
        make_jpeg(lib / "b.jpg", 2)
        reader = connect(settings.db_path, readonly=True)
        assert wait_for(lambda: reader.execute("SELECT count(*) FROM photos").fetchone()[0] == 2)
        reader.close()
    finally:
        stop.set()
        thread.join(10)
        db.close()
