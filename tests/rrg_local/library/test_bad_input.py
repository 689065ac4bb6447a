"""Bad input: every kind of broken file gets one clear error line, the scan goes on, the library is untouched."""

import io
import os
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

from rrg_local.library.query import photo_at, photo_file
from rrg_local.library.reader import FileError, PhotoFile, read_photo
from rrg_local.library.scan import Scanner
from tests.conftest import draw_photo, tree_checksums

RRG = [sys.executable, "-m", "rrg_local.cli"]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge 1-bit image, with a tiny IDAT: decoding would need gigabytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def jpeg(seed=1) -> bytes:
    buf = io.BytesIO()
    draw_photo(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def bad_library(tmp_path):
    """A library with good photos between every kind of bad file. Returns (root, {name: expected kind})."""
    lib = tmp_path / "lib"
    (lib / "ok").mkdir(parents=True)
    for i in range(3):
        (lib / "ok" / f"good{i}.jpg").write_bytes(jpeg(i))
    good_png = io.BytesIO()
    draw_photo(9).save(good_png, "PNG")
    broken_png = bytearray(good_png.getvalue())
    broken_png[30:40] = b"\xff" * 10  # inside IHDR/IDAT: CRC and data no longer match
    data = jpeg(7)
    expected = {
        "truncated.jpg": ("truncated", data[: len(data) // 2]),
        "corrupt.png": ("corrupt", bytes(broken_png)),
        "empty.jpg": ("empty", b""),
        "notes.jpg": ("not_image", b"just some text, not a photo\n"),
        "bomb.png": ("too_large", png_bomb(40_000, 40_000)),
    }
    for name, (_, content) in expected.items():
        (lib / name).write_bytes(content)
    os.symlink("nowhere.jpg", lib / "dangling.jpg")
    os.symlink("..", lib / "ok" / "loop")  # a folder that contains itself
    os.symlink("self.jpg", lib / "self.jpg")
    kinds = {name: kind for name, (kind, _) in expected.items()}
    kinds |= {"dangling.jpg": "broken_link", "loop": "symlink_loop", "self.jpg": "symlink_loop"}
    return lib, kinds


def test_each_bad_file_gets_one_error_and_the_good_ones_are_indexed(bad_library, db, settings):
    lib, kinds = bad_library
    before = tree_checksums(lib)
    report = Scanner(db, settings).scan([lib])
    got = {os.path.basename(e.path): e.kind for e in report.errors}
    assert got == kinds
    assert report.new_photos == 3
    stored = dict(db.execute("SELECT path, kind FROM errors").fetchall())
    assert {os.path.basename(p): k for p, k in stored.items()} == kinds
    assert all("\n" not in r for (r,) in db.execute("SELECT reason FROM errors"))
    assert tree_checksums(lib) == before
    # A rescan does not re-read unchanged bad files and keeps their errors.
    again = Scanner(db, settings).scan([lib])
    assert again.known_errors == 5 and again.new_photos == 0
    assert db.execute("SELECT count(*) FROM errors").fetchone()[0] == len(kinds)


def test_fixed_file_clears_its_error_and_deleted_bad_file_drops_it(bad_library, db, settings):
    lib, _ = bad_library
    scanner = Scanner(db, settings)
    scanner.scan([lib])
    (lib / "truncated.jpg").write_bytes(jpeg(7))  # the transfer finished
    os.remove(lib / "notes.jpg")
    report = scanner.scan([lib])
    assert report.new_photos == 1
    names = {os.path.basename(p) for (p,) in db.execute("SELECT path FROM errors")}
    assert "truncated.jpg" not in names and "notes.jpg" not in names and "empty.jpg" in names


def test_cli_prints_one_line_per_bad_file(bad_library, settings):
    lib, kinds = bad_library
    out = subprocess.run([*RRG, "index", str(lib)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == len(kinds) and all(line.startswith("error: ") for line in lines)
    assert "3 new photos" in out.stdout and f"{len(kinds)} errors" in out.stdout


def test_file_that_vanishes_or_changes_while_being_read(tmp_path, settings):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg(1))
    st = path.stat()
    kw = dict(thumbs_dir=settings.thumbs_dir, max_pixels=settings.max_pixels, thumb_size=64, is_known=lambda _: False)
    assert isinstance(read_photo(os.fsencode(path), st, **kw), PhotoFile)
    path.write_bytes(jpeg(2))  # rewritten after the walker's stat
    changed = read_photo(os.fsencode(path), st, **kw)
    assert isinstance(changed, FileError) and changed.kind == "changed"
    path.unlink()
    vanished = read_photo(os.fsencode(path), st, **kw)
    assert isinstance(vanished, FileError) and vanished.kind == "vanished"


def test_odd_file_names(tmp_path, db, settings):
    lib = tmp_path / "lib"
    lib.mkdir()
    raw_lib = os.fsencode(lib)
    latin1 = raw_lib + b"/caf\xe9.jpg"  # not valid UTF-8
    with open(latin1, "wb") as fh:
        fh.write(jpeg(1))
    long_name = ("\u00e9" * 120) + ".jpg"  # 244 bytes in UTF-8, near the 255-byte limit
    deep = lib.joinpath(*(["nested folder with spaces"] * 12))
    deep.mkdir(parents=True)
    (deep / long_name).write_bytes(jpeg(2))
    (lib / 'quote\'s "and" newline\n.jpg').write_bytes(jpeg(3))
    (lib / "escape \x1b[2Jclears.jpg").write_bytes(jpeg(4))
    scanner = Scanner(db, settings)
    report = scanner.scan([lib])
    assert report.errors == [] and report.new_photos == 4
    raws = {r[0] for r in db.execute("SELECT raw FROM paths")}
    assert latin1 in raws
    shown = db.execute("SELECT path FROM paths WHERE raw = ?", [latin1]).fetchone()[0]
    assert shown.endswith("caf\\xe9.jpg")
    # What is listed is one line and inert in a terminal; the file is still found by its bytes.
    shown = [r[0] for r in db.execute("SELECT path FROM paths ORDER BY raw")]
    assert all(s.isprintable() for s in shown)
    assert any(s.endswith("newline\\n.jpg") for s in shown) and any("escape \\x1b[2Jclears" in s for s in shown)
    for (pid,) in db.execute("SELECT photo_id FROM paths"):
        assert photo_file(db, pid).is_file()
    assert os.fsencode(photo_file(db, photo_at(db, os.fsdecode(latin1)))) == latin1
    assert scanner.scan([lib]).unchanged == 4


def _unshare_works(*args) -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", *args, "true"], capture_output=True).returncode == 0


needs_userns = pytest.mark.skipif(not _unshare_works("--user"), reason="user namespaces unavailable")


@needs_userns
def test_unreadable_files_and_folders_are_reported_and_not_marked_missing(tmp_path, rrg_home):
    """Run as an unprivileged user (a user namespace), so permissions apply even when tests run as root."""
    lib = tmp_path / "lib"
    (lib / "open").mkdir(parents=True)
    (lib / "locked").mkdir()
    (lib / "open" / "a.jpg").write_bytes(jpeg(1))
    (lib / "open" / "secret.jpg").write_bytes(jpeg(2))
    (lib / "locked" / "b.jpg").write_bytes(jpeg(3))
    cmd = ["unshare", "--user", *RRG, "index", str(lib)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "3 new photos" in first.stdout
    os.chmod(lib / "open" / "secret.jpg", 0)
    os.chmod(lib / "locked", 0)
    try:
        (lib / "open" / "secret.jpg").touch()
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(lib / "locked", 0o755)
        os.chmod(lib / "open" / "secret.jpg", 0o644)
    assert second.returncode == 0, second.stderr
    errs = second.stderr.strip().splitlines()
    assert any("secret.jpg: permission denied" in line for line in errs)
    assert any("locked: permission denied: cannot list the folder" in line for line in errs)
    # b.jpg could not be seen, but it was not deleted either: it must not become missing.
    assert "0 newly missing" in second.stdout


@pytest.mark.skipif(not _unshare_works("-rm"), reason="mount namespaces unavailable")
def test_library_on_a_read_only_mount(tmp_path, rrg_home):
    lib = tmp_path / "lib"
    for i in range(3):
        (lib / "d").mkdir(parents=True, exist_ok=True)
        (lib / "d" / f"{i}.jpg").write_bytes(jpeg(i))
    before = tree_checksums(lib)
    script = (
        f"mount --bind {lib} {lib} && mount -o remount,bind,ro {lib} && "
        f"! touch {lib}/probe 2>/dev/null && exec {sys.executable} -m rrg_local.cli index {lib}"
    )
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "3 new photos" in out.stdout and "0 errors" in out.stdout
    assert tree_checksums(lib) == before
