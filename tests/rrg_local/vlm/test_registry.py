"""The model registry and GGUF metadata checks; `rrg model` end to end."""

import struct
import subprocess
import sys

import pytest

from rrg_local.vlm import registry
from rrg_local.vlm.gguf_meta import GGUFError, read_metadata

RRG = [sys.executable, "-m", "rrg_local.cli"]


def gguf_header(path, meta: dict) -> None:
    """A header-only GGUF (no tensors) with string, int, bool and array values."""

    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    body = b""
    for key, value in meta.items():
        body += s(key)
        if isinstance(value, bool):
            body += struct.pack("<I?", 7, value)
        elif isinstance(value, int):
            body += struct.pack("<II", 4, value)
        elif isinstance(value, list):
            body += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(s(v) for v in value)
        else:
            body += struct.pack("<I", 8) + s(value)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(meta)) + body)


@pytest.fixture
def pair(tmp_path):
    text, proj = tmp_path / "m.gguf", tmp_path / "mmproj.gguf"
    gguf_header(
        text,
        {
            "general.architecture": "qwen2vl",
            "qwen2vl.embedding_length": 1536,
            "tokenizer.ggml.tokens": ["a", "b", "c"],
        },
    )
    gguf_header(
        proj,
        {
            "general.architecture": "clip",
            "clip.has_vision_encoder": True,
            "clip.vision.projection_dim": 1536,
            "clip.projector_type": "qwen2vl_merger",
        },
    )
    return text, proj


def test_read_metadata_skips_arrays(pair):
    meta = read_metadata(pair[0])
    assert meta["general.architecture"] == "qwen2vl" and meta["qwen2vl.embedding_length"] == 1536
    assert meta["tokenizer.ggml.tokens"] == "<array of 3>"


def test_read_metadata_rejects_junk(tmp_path):
    (tmp_path / "x").write_bytes(b"GGUF\x03\x00\x00\x00\x00")
    with pytest.raises(GGUFError, match="truncated"):
        read_metadata(tmp_path / "x")


def test_check_pair_names_the_bad_file(pair, tmp_path):
    text, proj = pair
    assert registry.check_pair(text, proj)["projector"] == "qwen2vl_merger"
    with pytest.raises(registry.RegistryError, match=f"mmproj file not found: {tmp_path}/nope"):
        registry.check_pair(text, tmp_path / "nope")
    with pytest.raises(registry.RegistryError, match=f"model file {proj} is a projector"):
        registry.check_pair(proj, proj)
    with pytest.raises(registry.RegistryError, match=f"mmproj file {text} is not a vision projector"):
        registry.check_pair(text, text)
    other = tmp_path / "mmproj-7b.gguf"
    gguf_header(
        other, {"general.architecture": "clip", "clip.has_vision_encoder": True, "clip.vision.projection_dim": 3584}
    )
    with pytest.raises(registry.RegistryError, match="projects to 3584 dims, the model has 1536"):
        registry.check_pair(text, other)
    (tmp_path / "text.gguf").write_text("hello")
    with pytest.raises(registry.RegistryError, match="not a GGUF file"):
        registry.check_pair(tmp_path / "text.gguf", proj)


def test_model_commands(pair, tmp_path):
    text, proj = pair

    def rrg(*args):
        return subprocess.run([*RRG, "model", *args], capture_output=True, text=True, timeout=60)

    none = rrg("list")
    assert none.returncode == 0 and "no models" in none.stderr
    assert rrg("add", "qwen", "--gguf", str(text), "--mmproj", str(proj)).returncode == 0
    assert rrg("add", "other", "--gguf", str(text), "--mmproj", str(proj)).returncode == 0
    assert rrg("list").stdout.splitlines()[1].startswith("* qwen")
    assert rrg("use", "other").returncode == 0
    assert rrg("list").stdout.splitlines()[0].startswith("* other")
    bad = rrg("add", "broken", "--gguf", str(text), "--mmproj", str(tmp_path / "missing.gguf"))
    assert bad.returncode == 1 and bad.stderr.strip() == f"error: mmproj file not found: {tmp_path}/missing.gguf"
    assert rrg("use", "nope").stderr.strip() == "error: no model named 'nope' (rrg model list)"
    proj.unlink()
    assert "(files missing)" in rrg("list").stdout


def test_pull_offline_gives_one_clear_error(monkeypatch):
    # A closed port on this machine stands in for "no internet": nothing leaves loopback.
    env = {"HF_ENDPOINT": "http://127.0.0.1:9"}
    import os

    out = subprocess.run(
        [*RRG, "model", "pull", "Qwen/Qwen2-VL-2B-Instruct-GGUF"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "not reachable" in lines[0] and "rrg model add" in lines[0]


def test_open_model_without_any_model_says_how_to_add_one(settings):
    with pytest.raises(registry.RegistryError, match="rrg model add NAME"):
        registry.open_model(settings)
