"""SIGKILL in the middle of `rrg index`, then run it again: the same index as one clean run."""

import os
import signal
import subprocess
import sys
import time

from rrg_local.db import connect
from tests.conftest import write_jpeg


def snapshot(home):
    conn = connect(home / "library.db", readonly=True)
    photos = conn.execute(
        "SELECT hash, size, width, height, format, taken_at, orientation, camera, phash, thumb, missing FROM photos"
    ).fetchall()
    paths = conn.execute(
        "SELECT p.path, ph.hash, p.size, p.mtime_ns, p.missing FROM paths p JOIN photos ph ON ph.id = p.photo_id"
    ).fetchall()
    jobs = conn.execute("SELECT ph.hash, j.kind, j.state FROM jobs j JOIN photos ph ON ph.id = j.photo_id").fetchall()
    errors = conn.execute("SELECT path, kind FROM errors").fetchall()
    counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("photos", "paths", "jobs")]
    conn.close()
    thumbs = sorted(str(p.relative_to(home / "thumbs")) for p in (home / "thumbs").rglob("*.jpg"))
    return sorted(photos), sorted(paths), sorted(jobs), sorted(errors), counts, thumbs


def run_index(home, lib, **kw):
    env = {**os.environ, "RRG_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "rrg_local.cli", "index", str(lib)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_sigkill_midway_then_rerun_equals_a_clean_run(tmp_path):
    lib = tmp_path / "lib"
    for i in range(240):
        write_jpeg(lib / f"d{i % 4}" / f"{i:04d}.jpg", i, size=(900, 700))
    (lib / "bad.jpg").write_bytes(b"not a jpeg")

    clean = tmp_path / "clean"
    assert run_index(clean, lib).wait(300) == 0

    killed = tmp_path / "killed"
    (killed).mkdir()
    (killed / "config.toml").write_text("scan_workers = 1\n")  # slower, so the kill lands midway
    proc = run_index(killed, lib)
    db_file = killed / "library.db"

    def committed():
        try:
            conn = connect(db_file, readonly=True)
            n = conn.execute("SELECT count(*) FROM photos").fetchone()[0]
            conn.close()
            return n
        except Exception:  # noqa: BLE001 - the file may not exist or be mid-creation
            return 0

    deadline = time.monotonic() + 120
    while committed() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the index finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = committed()
    assert 0 < partial < 240
    assert run_index(killed, lib).wait(300) == 0
    assert snapshot(killed) == snapshot(clean)
    # A third run has nothing left to do.
    out = run_index(killed, lib)
    stdout, _ = out.communicate(timeout=120)
    assert b"240 unchanged" in stdout and b"0 new photos" in stdout
