"""`rrg concept/tag/tags/review/ask` in real subprocesses: real SQLite, the real tiny llama.cpp model."""

import re
import signal
import subprocess
import sys
import time

import pytest

from rrg_local.db import connect

RRG = [sys.executable, "-m", "rrg_local.cli"]


def rrg(*args, check=True, timeout=300):
    out = subprocess.run([*RRG, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def with_model(tiny, rrg_home):
    pair = tiny.pair("f16")
    rrg("model", "add", "tiny", "--gguf", str(pair.text), "--mmproj", str(pair.mmproj))
    return rrg_home


def test_commands_that_need_a_model_say_how_to_get_one(library):
    rrg("index", str(library))
    out = rrg("concept", "add", "Bo", "--category", "dog", str(library / "refs/bo0.jpg"), check=False)
    assert out.returncode == 1 and "rrg model add NAME" in out.stderr
    # Without the model a concept can still be created; library questions still work.
    rrg("concept", "add", "Bo", "--category", "dog", "--no-describe", str(library / "refs/bo0.jpg"))
    assert "1 photo of <Bo>" in rrg("ask", "Show me photos of bo").stdout


def test_teach_tag_review_ask_remove(library, with_model):
    rrg("index", str(library))
    refs = [str(library / f"refs/bo{i}.jpg") for i in range(3)]
    added = rrg("concept", "add", "Bo", "--category", "dog", *refs)
    assert "added <Bo> (dog) with 3 reference photos" in added.stdout and "detailed: " in added.stdout
    shown = rrg("concept", "show", "bo").stdout
    assert "candidate descriptions (mean reference-game reward):" in shown and shown.count("  * ") == 1
    tagged = rrg("tag").stdout
    assert tagged.startswith("tagged 13 photos") and "+ 3 calibration)" in tagged  # Bo's 3 photos, no negatives yet
    shown = rrg("concept", "show", "Bo").stdout
    assert "stage-2 threshold: " in shown and "(its own: 3 of its photos vs 0 known not to show it)" in shown
    scores = next(line for line in shown.splitlines() if line.startswith("listener scores"))
    assert len(re.findall(r" \d+:[01]\.\d\d", scores)) == 3 and scores.endswith("show it -")  # none yet
    listing = rrg("tags", "Bo").stdout.splitlines()
    assert sum("confirmed" in line for line in listing) == 3
    other = rrg("photos", "--folder", str(library / "others")).stdout.split()[0]
    copy = rrg("photos", "--folder", str(library / "copies")).stdout.split()[0]
    rrg("review", "Bo", "--confirm", copy, "--reject", other)
    shown = rrg("concept", "show", "Bo").stdout
    assert f"confirmed: {copy}" in shown and f"negative: {other}" in shown
    asked = rrg("ask", "Show me photos of <BO>").stdout
    assert asked.startswith("4 photos of <Bo>") or "unconfirmed" in asked  # 3 refs + the confirmed copy (+ any)
    assert any(line.split()[0] == copy for line in asked.splitlines()[1:])
    answer = rrg("ask", "Is Bo in this photo?", "--photo", str(library / "copies/bo1-again.jpg")).stdout
    assert answer.startswith("<Bo>: ") and "P(yes) = " in answer
    before = rrg("status").stdout
    rrg("concept", "rm", "Bo", "--yes")
    assert (
        rrg("concept", "list").stdout == "" and rrg("status").stdout.split("pending")[0] == before.split("pending")[0]
    )


def test_rrg_tag_killed_midway_resumes(tmp_path, with_model):
    from tests.conftest import write_jpeg

    lib = tmp_path / "big"
    for i in range(160):
        write_jpeg(lib / f"{i:04d}.jpg", 1000 + i, size=(320, 240))
    rrg("index", str(lib))
    rrg("concept", "add", "Bo", "--category", "dog", "--no-describe", str(lib / "0000.jpg"), str(lib / "0001.jpg"))
    db_file = with_model / "library.db"
    proc = subprocess.Popen([*RRG, "tag"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def done():
        conn = connect(db_file, readonly=True)
        n = conn.execute("SELECT count(*) FROM jobs WHERE kind = 'tag' AND state = 'done'").fetchone()[0]
        conn.close()
        return n

    deadline = time.monotonic() + 120
    while done() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "tagging finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = done()
    assert 0 < partial < 160
    out = rrg("tag").stdout
    assert out.startswith(f"tagged {160 - partial} photos")
    assert done() == 160


def test_watch_tags_new_photos_as_they_arrive(library, with_model, tmp_path):
    from tests.conftest import write_jpeg

    rrg("index", str(library))
    rrg("concept", "add", "Bo", "--category", "dog", "--no-describe", str(library / "refs/bo0.jpg"))
    proc = subprocess.Popen(
        [*RRG, "watch", str(library), "--debounce", "0.2", "--tag"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db_file = with_model / "library.db"

    def pending():
        conn = connect(db_file, readonly=True)
        n = conn.execute("SELECT count(*) FROM jobs WHERE kind = 'tag' AND state != 'done'").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM jobs WHERE kind = 'tag'").fetchone()[0]
        conn.close()
        return n, total

    try:
        deadline = time.monotonic() + 60
        while pending() != (0, 13) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pending() == (0, 13)  # the initial scan's backlog was tagged
        write_jpeg(library / "new" / "arrived.jpg", 4242)
        while pending() != (0, 14) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pending() == (0, 14)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "[tag] 1 photo tagged, " in out and "1 photos" not in out  # the new photo, in words a person would use


def test_a_configured_onnx_embedder_does_stage_1(library, with_model):
    from trainer.tiny_clip import tiny_clip

    onnx_dir = tiny_clip()
    (with_model / "config.toml").write_text(f'embedder = "{onnx_dir}"\n')
    rrg("index", str(library))
    rrg(
        "concept",
        "add",
        "Bo",
        "--category",
        "dog",
        "--no-describe",
        str(library / "refs/bo0.jpg"),
        str(library / "refs/bo1.jpg"),
    )
    assert rrg("tag").stdout.startswith("tagged 13 photos")
    conn = connect(with_model / "library.db", readonly=True)
    names = {r[0] for r in conn.execute("SELECT DISTINCT embedder FROM embeddings")}
    conn.close()
    assert len(names) == 1 and next(iter(names)).startswith("onnx:")
    (with_model / "config.toml").write_text('embedder = "/nowhere"\n')
    bad = rrg("tag", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "/nowhere" in bad.stderr
