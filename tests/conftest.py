"""Shared fixtures: an isolated RRG_HOME for every test, settings, a real SQLite file, and image makers."""

from __future__ import annotations

import hashlib
import io
import os
import random
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from rrg_local.config import Settings, load_settings
from rrg_local.db import open_db
from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel

# No test downloads: the Hugging Face hub client stays offline in this process (and its subprocesses).
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def rrg_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("rrg-home")
    monkeypatch.setenv("RRG_HOME", str(home))
    return home


@pytest.fixture
def settings(rrg_home) -> Settings:
    from dataclasses import replace

    return replace(load_settings(), scan_workers=2)


@pytest.fixture
def db(settings):
    database = open_db(settings.db_path)
    yield database
    database.close()


def draw_photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A distinct, deterministic picture per seed (shapes on a gradient)."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(6):
        x0, y0 = rng.randint(0, w - 20), rng.randint(0, h - 20)
        x1, y1 = rng.randint(x0 + 10, w), rng.randint(y0 + 10, h)
        fill = tuple(rng.randint(0, 255) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
    return img


def exif_bytes(taken: datetime | None = None, orientation: int = 1, camera: tuple[str, str] | None = None) -> bytes:
    exif = Image.Exif()
    if taken:
        exif.get_ifd(0x8769)[36867] = taken.strftime("%Y:%m:%d %H:%M:%S")
    if orientation != 1:
        exif[274] = orientation
    if camera:
        exif[271], exif[272] = camera
    return exif.tobytes()


def write_jpeg(
    path: Path,
    seed: int,
    *,
    taken: datetime | None = None,
    orientation: int = 1,
    camera: tuple[str, str] | None = None,
    size=(320, 240),
    quality: int = 90,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    draw_photo(seed, size).save(buf, "JPEG", quality=quality, exif=exif_bytes(taken, orientation, camera))
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def make_jpeg():
    return write_jpeg


def tree_checksums(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mode of every file, and mode of every folder, under root (without following links)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if os.path.islink(p):
                out[os.fsdecode(p)] = ("link:" + os.fsdecode(os.readlink(p)), st.st_mode)
            elif os.path.isfile(p):
                try:
                    with open(p, "rb") as fh:
                        digest = hashlib.sha256(fh.read()).hexdigest()
                except PermissionError:
                    digest = "unreadable"
                out[os.fsdecode(p)] = (digest, st.st_mode)
            else:
                out[os.fsdecode(p)] = ("dir", st.st_mode)
    return out


# ---- the tiny Qwen2-VL the project builds and converts itself (cached outside the repo) ---------


@pytest.fixture(scope="session")
def tiny():
    from trainer.tiny import tiny_gguf

    return tiny_gguf()


@pytest.fixture(scope="session")
def tiny_config(tiny) -> LlamaConfig:
    pair = tiny.pair("f16")
    return LlamaConfig(model=pair.text, mmproj=pair.mmproj, n_ctx=2048, n_threads=1, image_max_tokens=None)


@pytest.fixture
def model(tiny_config):
    with LlamaVisionModel(tiny_config) as m:
        yield m


@pytest.fixture
def plain(tiny_config):
    """The same model on the plain path: no KV reuse, every image encoded again."""
    with LlamaVisionModel(tiny_config, cache=False) as m:
        yield m


# ---- a tiny benchmark layout for the trainer: ROOT/photos/<concept>/<n>.jpg + ROOT/categories.csv ---------

BENCH_CATEGORIES = {"mug_red": "mug", "mug_blue": "mug", "dog_bo": "dog", "dog_rex": "dog"}
# Trainer settings small enough for a CPU step in about a second on the tiny model.
SMALL_TRAIN = {"K": 2, "group_size": 2, "targets_per_step": 2, "max_new_tokens": 8, "lora_r": 4, "lora_alpha": 8}


def write_benchmark(root: Path, categories: dict[str, str] = BENCH_CATEGORIES, per_concept: int = 3) -> Path:
    """Three 112 px photos per concept and the categories CSV; returns `root`."""
    for i, concept in enumerate(categories):
        (root / "photos" / concept).mkdir(parents=True)
        for j in range(per_concept):
            draw_photo(10 * i + j, (112, 112)).save(root / "photos" / concept / f"{j}.jpg", quality=90)
    rows = "".join(f"{c},{cat}\n" for c, cat in categories.items())
    (root / "categories.csv").write_text("concept,category\n" + rows)
    return root
