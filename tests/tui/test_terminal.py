"""`rrg tui` in a real terminal: tmux runs it detached on a private socket, we read the screen and press q."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")


def wait_for(predicate, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


def test_rrg_tui_shows_the_library_and_quits_on_q(library, rrg_home, tmp_path):
    # A private server on a socket in the test's folder: no other tmux session is touched, nothing is left behind.
    # A fixed 140x40 window: without a client tmux may size it 80x24 first, and a busy machine can start the
    # app before the size settles (seen: the table drawn 80 columns wide inside the 140-column pane).
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g default-size 140x40\n")
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock"), "-f", str(conf)]
    # COLUMNS/LINES pin the size the app reads at start (a busy machine sometimes started it at 80x24).
    command = shlex.join(
        ["env", f"RRG_HOME={rrg_home}", "COLUMNS=140", "LINES=40", sys.executable, "-m", "rrg_local.cli", "tui"]
    )
    done = tmp_path / "exited"
    # The pane outlives the app for a while, so a crash leaves its traceback on screen for the message below.
    shell = f"{command}; echo $? > {shlex.quote(str(done))}; sleep 60"
    subprocess.run([*tmux, "new-session", "-d", "-s", "rrg", "-x", "140", "-y", "40", shell], check=True)
    try:

        def screen() -> str:
            out = subprocess.run([*tmux, "capture-pane", "-p", "-t", "rrg"], capture_output=True, text=True)
            return out.stdout

        expected = ("3 of 3 photos", "2023-01-05", "2024-06-03", "2024-06-04", "Canon EOS R6")
        text = wait_for(lambda: (s := screen()) and all(e in s for e in expected) and s)
        exited = done.read_text().strip() if done.exists() else "still running"
        assert text, f"the library never showed (exit status: {exited}):\n{screen()}"
        assert all(col in text for col in ("id", "date", "size", "camera", "path"))
        assert str(library[0].folders[0])[:30] in text
        subprocess.run([*tmux, "send-keys", "-t", "rrg", "q"], check=True)
        assert wait_for(done.exists, timeout=15), f"still running after q:\n{screen()}"
        assert done.read_text().strip() == "0"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
