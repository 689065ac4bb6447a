"""`rrg demo`, the README's main command, end to end: real files, real SQLite, the shipped model in llama.cpp."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from rrg_local.demo import run as demo_run
from tests.netguard import attempts, guarded_env

RRG = [sys.executable, "-m", "rrg_local.cli"]
pytest.importorskip("llama_cpp")


def rrg(*args, env=None):
    out = subprocess.run([*RRG, *args], capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_score_counts_pairs_outside_the_references():
    s = demo_run.score_tags({(1, "Bo"), (2, "Bo"), (5, "Pip")}, {(1, "Bo"), (3, "Bo"), (5, "Pip")}, {(5, "Pip")})
    assert (s.tp, s.fp, s.fn) == (1, 1, 1) and s.precision == 0.5 and s.recall == 0.5


def test_damaged_shipped_model_is_refused_with_one_line(tmp_path):
    import shutil

    for f in demo_run.MODEL_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    text = tmp_path / manifest["files"]["text"]["path"]
    data = bytearray(text.read_bytes())
    data[len(data) // 2] ^= 0xFF
    text.write_bytes(bytes(data))
    with pytest.raises(demo_run.DemoError, match="damaged"):
        demo_run.shipped_model(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(demo_run.DemoError, match="rrg-train demo-model"):
        demo_run.shipped_model(tmp_path)


def test_rrg_demo_tags_the_library_and_answers(rrg_home, tmp_path):
    import os
    import sqlite3

    net = tmp_path / "network.log"
    out = rrg("demo", env=guarded_env(net))
    # Privacy: the whole main job, model and all, looks up and connects to no other machine.
    assert attempts(net) == []
    home = rrg_home / "demo"
    # The library: generated, indexed, the truncated JPEG reported and skipped (the text file is not an image).
    m = re.search(r"indexed (\d+) photos .* \(1 bad file", out)
    truth = json.loads((home / "library" / "truth.json").read_text())
    assert m and int(m.group(1)) == len(truth["files"])
    # Six concepts taught from three photos each, every one described by the speaker.
    taught = re.findall(r"^  <(\w+)> \(([a-z ]+), ([a-z-]+-\d)\): A photo of", out, re.M)
    assert len(taught) == 6
    # The printed score is the tags in the database against truth.json, recomputed here independently.
    db = sqlite3.connect(home / "library.db")
    rel = {row[1]: os.path.relpath(row[0], home / "library") for row in db.execute(
        "SELECT path, photo_id FROM paths WHERE missing = 0")}  # fmt: skip
    name_of = {truth_name: name for name, _, truth_name in taught}
    refs = {(rel[p], n) for p, n in db.execute(
        "SELECT cp.photo_id, c.name FROM concept_photos cp JOIN concepts c ON c.id = cp.concept_id "
        "WHERE cp.role = 'reference'")}  # fmt: skip
    assert len(refs) == 18
    tagged = {(rel[p], n) for p, n in db.execute(
        "SELECT t.photo_id, c.name FROM tags t JOIN concepts c ON c.id = t.concept_id "
        "WHERE t.status IN ('suggested', 'confirmed')")} - refs  # fmt: skip
    true = {(f, name_of[c]) for f, info in truth["files"].items() for c in info["concepts"]} - refs
    tp = len(tagged & true)
    m = re.search(r"precision ([\d.]+) \((\d+)/(\d+)\), recall ([\d.]+) \((\d+)/(\d+)\)", out)
    assert m, out
    assert (int(m.group(2)), int(m.group(3)), int(m.group(5)), int(m.group(6))) == (tp, len(tagged), tp, len(true))
    # The goal on the demo library (the shipped models and the demo are deterministic).
    assert tp / len(tagged) >= 0.9 and tp / len(true) >= 0.8, m.group(0)
    # Cost: at most one tagging call per photo for 6 concepts (naive: 6 per photo); one explanation per tag;
    # calibration: each concept's 3 photos and up to 8 photos of other concepts that stage 1 would send with it.
    calls = re.search(r"(\d+) VLM calls: (\d+) to tag \(([\d.]+) per photo; naive: 6 per photo\), (\d+) to explain "
                      r"the tags, (\d+) to calibrate the concepts; (\d+) tags", out)  # fmt: skip
    total, stage2, per_photo, explain, calibrate, n_tags = (float(x) for x in calls.groups())
    assert total == stage2 + explain + calibrate and per_photo <= 1.0 and explain == n_tags
    assert 6 * 3 <= calibrate <= 6 * (3 + 8)
    # Questions: library answers cite photos; a reference photo is answered from what the person said, other
    # photos by the model (three "Is <Bo> in this photo?": a reference, an unseen photo of Bo, a photo without him).
    assert "? Show me photos of <Bo>" in out and out.count("? Is <Bo> in this photo?") == 3
    assert "<Bo>: yes: this is one of <Bo>'s reference photos." in out
    looked = re.findall(r"^  <Bo>: (probably )?(yes|no) \(P\(yes\) = [\d.]+, <Bo>'s cut ", out, re.M)
    assert [verdict for _, verdict in looked] == ["yes", "no"]  # the unseen photo of Bo; the photo without him
    assert re.search(r"\? Where was this photo taken\?.*\n  \S", out)
    # "Show me <Bo> on the beach": Bo's photos, only those truly taken there (truth.json), found by asking the
    # model about each of his tagged photos (the demo model was never taught a yes/no scene question).
    m = re.search(r"^\? Show me <Bo> (?:on|in) the ([a-z ]+)\n((?:  .*\n)+)", out, re.M)
    assert m, out
    scene, listed = m.group(1), re.findall(r"^\s+\d+\s+\S+\s+(\S+\.jpg)", m.group(2), re.M)
    bo = next(c for name, _, c in taught if name == "Bo")
    shown = [os.path.relpath(p, home / "library") for p in listed]
    assert shown and all(truth["files"][f]["scene"] == scene and bo in truth["files"][f]["concepts"] for f in shown)
    of_bo = re.search(r"^  (\d+) photos of <Bo>:", out, re.M)
    assert len(shown) < int(of_bo.group(1)), "the scene must filter Bo's photos"
    # "Show me photos in the snow": no concept named, so every photo of the library, its scene checked by the model.
    m = re.search(r"^\? Show me photos in the snow\n  (\d+) photos? in the snow:\n((?:  .*\n)+)", out, re.M)
    assert m, out
    snow = {f for f, info in truth["files"].items() if info["scene"] == "snow"}
    paths = re.findall(r"^\s+\d+\s+\S+\s+(\S+\.jpg)", m.group(2), re.M)
    listed = {os.path.relpath(p, home / "library") for p in paths}
    assert len(listed) == int(m.group(1)) and listed <= snow and len(listed) >= 0.8 * len(snow), (listed, snow)
    # "Who is in this photo?": the unseen photo of Bo names him (and no one else); the photo without a concept, no one.
    who = re.findall(r"^\? Who is in this photo\?  \[photo (\S+)\]\n((?:  .*\n)+)", out, re.M)
    assert len(who) == 2, out
    (bo_photo, bo_answer), (none_photo, none_answer) = who
    assert truth["files"][bo_photo]["concepts"] == [bo] and re.findall(r"^  <(\w+)>:", bo_answer, re.M) == ["Bo"]
    assert not truth["files"][none_photo]["concepts"] and none_answer.startswith("  None of your 6 concepts")
    assert not (rrg_home / "library.db").exists()  # the user's own library is untouched
    # Resumable and idempotent: a second run reuses everything and reports the same tags.
    again = rrg("demo")
    assert re.search(r"precision ([\d.]+) \(\d+/\d+\)", again).group(0) == re.search(
        r"precision ([\d.]+) \(\d+/\d+\)", out).group(0)  # fmt: skip
    assert len(re.findall(r"^  <\w+> \(", again, re.M)) == 0  # nothing re-taught
