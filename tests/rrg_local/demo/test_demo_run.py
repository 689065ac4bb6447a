"""`rrg demo`, the README's main command, end to end: real files, real SQLite, the shipped model in llama.cpp."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from rrg_local.demo import run as demo_run

RRG = [sys.executable, "-m", "rrg_local.cli"]
pytest.importorskip("llama_cpp")


def rrg(*args):
    out = subprocess.run([*RRG, *args], capture_output=True, text=True, timeout=900)
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


def test_rrg_demo_tags_the_library_and_answers(rrg_home):
    out = rrg("demo")
    # The library: generated, indexed, the two bad files reported and skipped.
    assert re.search(r"indexed (\d+) photos .* \(1 bad file", out)
    # Six concepts taught from three photos each, every one described by the speaker.
    taught = re.findall(r"^  <(\w+)> \(([a-z ]+), [a-z-]+-\d\): A photo of", out, re.M)
    assert len(taught) == 6
    # The tags against the ground truth: the goal.
    m = re.search(r"precision ([\d.]+) \((\d+)/(\d+)\), recall ([\d.]+)", out)
    assert m, out
    precision, recall = float(m.group(1)), float(m.group(4))
    assert precision >= 0.90 and recall >= 0.80, out
    calls = re.search(r"([\d.]+) per photo; naive: 6 per photo", out)
    assert calls and float(calls.group(1)) <= 1.0
    # Questions: a library answer cites photos; a photo question is answered by the model.
    assert "? Show me photos of <Bo>" in out and "? Is <Bo> in this photo?" in out
    assert (rrg_home / "demo" / "library.db").exists() and not (rrg_home / "library.db").exists()
    # Resumable and idempotent: a second run reuses everything and reports the same tags.
    again = rrg("demo")
    assert "teaching" in again and re.search(r"precision ([\d.]+)", again).group(1) == m.group(1)
    assert len(re.findall(r"^  <\w+> ", again, re.M)) == 0  # nothing re-taught
