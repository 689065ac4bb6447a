"""Scanner behaviour on real files and a real SQLite file: identity, moves, deletes, stat-only rescans."""

import os
import shutil
from datetime import datetime

import pytest
from PIL import Image

from rrg_local.library.query import list_photos, status
from rrg_local.library.scan import Scanner
from tests.conftest import draw_photo, tree_checksums


@pytest.fixture
def scanner(db, settings):
    return Scanner(db, settings)


def rows(db, sql, params=()):
    return db.execute(sql, params).fetchall()


def test_every_supported_format_is_indexed(tmp_path, scanner, db, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1, taken=datetime(2020, 1, 2, 3, 4, 5), camera=("Google", "Pixel 7"))
    for i, fmt in enumerate(["PNG", "WEBP", "GIF", "TIFF", "BMP"], start=2):
        draw_photo(i).save(lib / f"p{i}.{fmt.lower()}", fmt)
    (lib / "notes.txt").write_text("hello")
    report = scanner.scan([lib])
    assert report.new_photos == 6 and report.errors == [] and report.skipped == 1
    formats = {r[0] for r in rows(db, "SELECT format FROM photos")}
    assert formats == {"JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"}
    a = rows(db, "SELECT taken_at, taken_at_source, camera, width, height FROM photos WHERE format='JPEG'")[0]
    assert a == ("2020-01-02T03:04:05", "exif", "Google Pixel 7", 320, 240)
    png = rows(db, "SELECT taken_at_source FROM photos WHERE format='PNG'")[0]
    assert png == ("mtime",)
    for (thumb,) in rows(db, "SELECT thumb FROM photos"):
        with Image.open(scanner.settings.thumbs_dir / thumb) as t:
            assert max(t.size) <= scanner.settings.thumb_size
    assert rows(db, "SELECT count(*) FROM jobs WHERE kind='embed' AND state='pending'")[0][0] == 6
    assert rows(db, "SELECT count(*) FROM jobs WHERE kind='tag' AND state='pending'")[0][0] == 6


def test_same_content_at_two_paths_is_one_photo(tmp_path, scanner, db, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1)
    (lib / "copy").mkdir()
    shutil.copy(lib / "a.jpg", lib / "copy" / "a.jpg")
    report = scanner.scan([lib])
    assert (report.new_photos, report.new_paths) == (1, 1)
    assert rows(db, "SELECT count(*) FROM photos")[0][0] == 1
    assert rows(db, "SELECT count(*) FROM paths")[0][0] == 2


def test_rescan_of_an_unchanged_library_is_stat_only(tmp_path, scanner, db, make_jpeg):
    lib = tmp_path / "lib"
    for i in range(5):
        make_jpeg(lib / f"{i}.jpg", i)
    scanner.scan([lib])
    hashes = rows(db, "SELECT hash FROM photos ORDER BY id")
    # Overwrite every file with garbage of the same size and put the old mtime back: a rescan that
    # read any file would see new hashes or errors; a stat-only one sees nothing.
    for i in range(5):
        p = lib / f"{i}.jpg"
        st = p.stat()
        p.write_bytes(b"x" * st.st_size)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    report = scanner.scan([lib])
    assert (report.unchanged, report.new_photos, report.errors) == (5, 0, [])
    assert rows(db, "SELECT hash FROM photos ORDER BY id") == hashes
    # Touching one file makes exactly that one be read again (and found corrupt).
    os.utime(lib / "0.jpg")
    report = scanner.scan([lib])
    assert report.unchanged == 4 and [e.kind for e in report.errors] == ["not_image"]


def test_changed_file_is_reread_and_renamed_file_keeps_its_photo(tmp_path, scanner, db, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1)
    make_jpeg(lib / "b.jpg", 2)
    scanner.scan([lib])
    (pid_a,) = rows(db, "SELECT photo_id FROM paths WHERE path LIKE '%a.jpg'")[0]
    os.rename(lib / "a.jpg", lib / "renamed.jpg")
    make_jpeg(lib / "b.jpg", 3)  # new content at the same path
    report = scanner.scan([lib])
    assert report.new_paths == 1 and report.new_photos == 1
    assert rows(db, "SELECT photo_id, missing FROM paths WHERE path LIKE '%renamed.jpg'")[0] == (pid_a, 0)
    assert rows(db, "SELECT missing FROM photos WHERE id = ?", [pid_a])[0][0] == 0
    # The old content of b.jpg is nowhere now: its photo is missing but kept.
    assert rows(db, "SELECT count(*) FROM photos WHERE missing = 1")[0][0] == 1
    assert rows(db, "SELECT count(*) FROM photos")[0][0] == 3


def test_deleted_photo_is_marked_missing_then_purged_on_request(tmp_path, scanner, db, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1)
    make_jpeg(lib / "b.jpg", 2)
    scanner.scan([lib])
    os.remove(lib / "a.jpg")
    report = scanner.scan([lib])
    assert report.missing == 1
    assert status(db)["photos"] == 1 and status(db)["missing"] == 1
    assert len(list_photos(db, include_missing=True)) == 2
    (thumb,) = rows(db, "SELECT thumb FROM photos WHERE missing = 1")[0]
    assert scanner.purge_missing() == 1
    assert not (scanner.settings.thumbs_dir / thumb).exists()
    assert rows(db, "SELECT count(*) FROM photos")[0][0] == 1


def test_photo_that_comes_back_is_no_longer_missing(tmp_path, scanner, db, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1)
    scanner.scan([lib])
    os.rename(lib / "a.jpg", tmp_path / "away.jpg")
    scanner.scan([lib])
    assert status(db)["missing"] == 1
    os.rename(tmp_path / "away.jpg", lib / "a.jpg")
    scanner.scan([lib])
    assert status(db) | {"last_scan": None} == {
        "photos": 1,
        "missing": 0,
        "paths": 1,
        "errors": 0,
        "pending_jobs": 2,  # embed + tag
        "last_scan": None,
    }


def test_unavailable_root_marks_nothing_missing(tmp_path, scanner, db, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1)
    scanner.scan([lib])
    os.rename(lib, tmp_path / "unmounted")
    report = scanner.scan([lib])
    assert len(report.unavailable) == 1 and "not available" in report.unavailable[0]
    assert status(db)["missing"] == 0


def test_date_and_folder_filters(tmp_path, scanner, db, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "2020" / "a.jpg", 1, taken=datetime(2020, 6, 1, 12))
    make_jpeg(lib / "2021" / "b.jpg", 2, taken=datetime(2021, 6, 30, 23, 59))
    make_jpeg(lib / "2021" / "c.jpg", 3, taken=datetime(2021, 7, 1, 0, 0))
    scanner.scan([lib])
    names = lambda rs: [os.path.basename(r["path"]) for r in rs]  # noqa: E731
    assert names(list_photos(db, since="2021")) == ["b.jpg", "c.jpg"]
    assert names(list_photos(db, until="2021-06")) == ["a.jpg", "b.jpg"]
    assert names(list_photos(db, since="2021-06-30", until="2021-06-30")) == ["b.jpg"]
    assert names(list_photos(db, folder=lib / "2020")) == ["a.jpg"]
    with pytest.raises(ValueError, match="not a date"):
        list_photos(db, since="last week")


def test_scan_never_writes_under_the_library(tmp_path, scanner, make_jpeg):
    lib = tmp_path / "lib"
    for i in range(4):
        make_jpeg(lib / "d" / f"{i}.jpg", i, orientation=6)
    (lib / "bad.jpg").write_bytes(b"nope")
    before = tree_checksums(lib)
    scanner.scan([lib])
    scanner.scan([lib])
    assert tree_checksums(lib) == before


def test_two_scans_of_one_library_at_once_record_each_photo_once(tmp_path, scanner, db, settings, make_jpeg):
    """The watcher's rescan and `rrg index` over the same folder: the other scan records a photo between this
    one's lookup of its hash and its insert. Neither fails, and each photo and path is recorded once."""
    from rrg_local.db import open_db

    lib = tmp_path / "lib"
    for i in range(3):
        make_jpeg(lib / f"p{i}.jpg", i)
    theirs = []

    def strike(sql):
        if sql.startswith("INSERT INTO photos") and not theirs:
            theirs.append(Scanner(open_db(settings.db_path), settings).scan([lib]))

    scanner.conn.set_trace_callback(strike)
    mine = scanner.scan([lib])
    scanner.conn.set_trace_callback(None)
    assert theirs and theirs[0].new_photos == 3
    assert mine.errors == [] and mine.new_photos == 0 and mine.new_paths == 0
    assert rows(db, "SELECT count(*) FROM photos")[0][0] == 3 and rows(db, "SELECT count(*) FROM paths")[0][0] == 3
    assert rows(db, "SELECT count(*) FROM jobs")[0][0] == 6  # one embed and one tag job a photo
