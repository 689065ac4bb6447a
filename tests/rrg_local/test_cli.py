"""The `rrg` command end to end, in real subprocesses against a real library folder."""

import os
import subprocess
import sys
from datetime import datetime

import click
import pytest

from rrg_local.cli import main

RRG = [sys.executable, "-m", "rrg_local.cli"]


def rrg(*args, check=True):
    out = subprocess.run([*RRG, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


@pytest.mark.parametrize("command", list(all_commands(main)), ids=" ".join)
def test_every_command_has_help(command):
    from click.testing import CliRunner

    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    assert len(result.output.splitlines()) > 2


def test_index_status_photos_errors(tmp_path, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "2019" / "a.jpg", 1, taken=datetime(2019, 4, 1, 9), camera=("Google", "Pixel 3"))
    make_jpeg(lib / "2022" / "b.jpg", 2, taken=datetime(2022, 8, 1, 9))
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    out = rrg("index", str(lib))
    assert "2 new photos" in out.stdout and "1 error in" in out.stdout
    assert out.stderr.strip() == f"error: {lib / 'broken.jpg'}: corrupt JPEG file (its header is damaged)"
    status = rrg("status").stdout
    assert (
        "photos:        2" in status and "errors:        1" in status and "pending jobs:  4" in status
    )  # embed + tag per photo
    listed = rrg("photos", "--since", "2020").stdout.splitlines()
    assert len(listed) == 1 and listed[0].endswith("b.jpg")
    assert "Pixel 3" in rrg("photos", "--folder", str(lib / "2019")).stdout
    assert "broken.jpg" in rrg("errors").stdout
    bad = rrg("photos", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: not a date")


def test_index_of_a_folder_that_is_not_there_fails_cleanly(tmp_path):
    out = rrg("index", str(tmp_path / "nope"), check=False)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("error: library folder not available")


def test_configured_folders_are_the_default(tmp_path, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1)
    assert rrg("index", check=False).returncode == 2
    rrg("folders", "add", str(lib))
    assert rrg("folders", "list").stdout.strip() == str(lib)
    assert "1 new photo," in rrg("index").stdout


def test_purge_forgets_missing_photos_only(tmp_path, make_jpeg):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1)
    make_jpeg(lib / "b.jpg", 2)
    rrg("index", str(lib))
    os.remove(lib / "a.jpg")
    assert "1 newly missing" in rrg("index", str(lib)).stdout
    assert rrg("purge", "--yes").stdout.strip() == "purged 1 missing photos"
    assert "photos:        1" in rrg("status").stdout
    assert (lib / "b.jpg").exists()


def test_watch_follows_changes_and_stops_cleanly_on_ctrl_c(tmp_path, make_jpeg):
    import signal
    import time

    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", 1)
    proc = subprocess.Popen(
        [*RRG, "watch", str(lib), "--debounce", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while "photos:        1" not in rrg("status").stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        make_jpeg(lib / "b.jpg", 2)
        while "photos:        2" not in rrg("status").stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "photos:        2" in rrg("status").stdout
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "[scan] indexed: 1 image file, 1 new photo," in out
    assert "[change] indexed: 1 image file, 1 new photo," in out
    assert err.strip().endswith("stopped")
