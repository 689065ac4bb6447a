"""The demo photo library: real JPEG/PNG files, drawn with Pillow, that `rrg demo` indexes.

`generate_library(dest, seed)` is deterministic for a seed: the same bytes every time. It writes a few
dated folders of scenes (sky, ground, sun, simple objects) with EXIF capture dates and camera models,
a burst of near-duplicates, a re-encoded copy, an exact copy in a second folder, a photo stored
rotated with an EXIF orientation tag, and two bad files (a truncated JPEG and a text file named .jpg)
so the demo shows how bad input is reported. `render_scene` is pure.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw

SCENES = {
    "beach": ((135, 200, 240), (230, 210, 160)),
    "park": ((150, 200, 250), (90, 160, 70)),
    "snow": ((200, 210, 225), (245, 245, 250)),
    "kitchen": ((225, 215, 195), (150, 110, 80)),
    "dusk": ((240, 150, 110), (70, 80, 60)),
}
CAMERAS = [("Canon", "Canon EOS 250D"), ("Google", "Pixel 7"), ("Apple", "iPhone 13")]
FOLDERS = [
    ("2023-summer-beach", "beach", datetime(2023, 7, 14, 10, 0)),
    ("2023-winter", "snow", datetime(2023, 12, 27, 13, 30)),
    ("2024-home", "kitchen", datetime(2024, 3, 2, 18, 15)),
    ("2024-park/walks", "park", datetime(2024, 5, 19, 16, 45)),
]


@dataclass(frozen=True)
class DemoFile:
    relpath: str
    kind: str  # photo, near_duplicate, copy, reencoded, rotated, bad
    taken_at: datetime | None


def render_scene(rng: random.Random, scene: str, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A sky-and-ground scene with a sun and 1-3 objects (ball, mug, box); pure given the rng state."""
    sky, ground = SCENES[scene]
    w, h = size
    img = Image.new("RGB", size, sky)
    draw = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.45, 0.65))
    for y in range(horizon):
        t = y / max(1, horizon)
        draw.line([(0, y), (w, y)], fill=tuple(int(c * (0.8 + 0.2 * t)) for c in sky))
    draw.rectangle([0, horizon, w, h], fill=ground)
    sx, sy, sr = rng.randint(40, w - 40), rng.randint(20, horizon // 2 + 20), rng.randint(15, 35)
    draw.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=(255, 230, 120))
    for _ in range(rng.randint(1, 3)):
        color = tuple(rng.randint(20, 235) for _ in range(3))
        x, y = rng.randint(60, w - 120), rng.randint(horizon + 10, h - 60)
        s = rng.randint(30, 70)
        shape = rng.choice(["ball", "mug", "box"])
        if shape == "ball":
            draw.ellipse([x, y - s, x + s, y], fill=color, outline=(30, 30, 30), width=2)
        elif shape == "mug":
            draw.rectangle([x, y - s, x + int(s * 0.8), y], fill=color, outline=(30, 30, 30), width=2)
            draw.arc([x + int(s * 0.6), y - int(s * 0.8), x + s, y - int(s * 0.2)], -90, 90, fill=color, width=6)
        else:
            draw.rectangle([x, y - s, x + s, y], fill=color, outline=(30, 30, 30), width=2)
            draw.line([(x, y - s), (x + s, y)], fill=(30, 30, 30), width=2)
    return img


def _exif(taken: datetime, camera: tuple[str, str], orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[271], exif[272] = camera
    exif[306] = taken.strftime("%Y:%m:%d %H:%M:%S")
    exif[274] = orientation
    exif.get_ifd(0x8769)[36867] = taken.strftime("%Y:%m:%d %H:%M:%S")
    return exif.tobytes()


def _save_jpeg(
    img: Image.Image, path: Path, taken: datetime, camera: tuple[str, str], *, quality: int = 90, orientation: int = 1
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=quality, exif=_exif(taken, camera, orientation))


def generate_library(dest: Path, *, seed: int = 0, per_folder: int = 6) -> list[DemoFile]:
    """Write the demo library under `dest` (created); returns what was written, in order."""
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    files: list[DemoFile] = []
    for folder, scene, start in FOLDERS:
        for i in range(per_folder):
            taken = start + timedelta(minutes=37 * i + rng.randint(0, 20))
            camera = rng.choice(CAMERAS)
            img = render_scene(rng, scene)
            rel = f"{folder}/IMG_{start:%Y%m%d}_{i:03d}.jpg"
            _save_jpeg(img, dest / rel, taken, camera)
            files.append(DemoFile(rel, "photo", taken))
            if i == 0:  # a burst: the same scene a moment later, slightly shifted and brighter
                shifted = Image.eval(
                    img.transform(img.size, Image.Transform.AFFINE, (1, 0, 4, 0, 1, 2)), lambda v: min(255, v + 6)
                )
                rel_b = f"{folder}/IMG_{start:%Y%m%d}_{i:03d}_burst.jpg"
                _save_jpeg(shifted, dest / rel_b, taken + timedelta(seconds=1), camera)
                files.append(DemoFile(rel_b, "near_duplicate", taken + timedelta(seconds=1)))
            if i == 1:  # a re-encoded, downsized copy (what a messaging app sends back)
                small = img.resize((320, 240), Image.Resampling.LANCZOS)
                rel_r = f"shared-from-chat/{folder.split('/')[0]}-{i}.jpg"
                _save_jpeg(small, dest / rel_r, taken, camera, quality=60)
                files.append(DemoFile(rel_r, "reencoded", taken))
    # An exact copy in a second folder: one photo, two paths.
    first = dest / files[0].relpath
    copy_rel = "backup/" + Path(files[0].relpath).name
    (dest / copy_rel).parent.mkdir(parents=True, exist_ok=True)
    (dest / copy_rel).write_bytes(first.read_bytes())
    files.append(DemoFile(copy_rel, "copy", files[0].taken_at))
    # A portrait photo stored sideways with EXIF orientation 6, as phones do.
    taken = datetime(2024, 8, 9, 11, 5)
    portrait = render_scene(rng, "park", size=(360, 480)).transpose(Image.Transpose.ROTATE_90)
    _save_jpeg(portrait, dest / "2024-park/IMG_portrait.jpg", taken, CAMERAS[2], orientation=6)
    files.append(DemoFile("2024-park/IMG_portrait.jpg", "rotated", taken))
    # A screenshot: PNG, no EXIF (its date falls back to the file's mtime).
    png = render_scene(rng, "dusk", size=(400, 300))
    png.save(dest / "screenshot.png", "PNG")
    files.append(DemoFile("screenshot.png", "photo", None))
    # Bad input, reported and skipped: a transfer cut short and a mislabelled text file.
    buf = io.BytesIO()
    render_scene(rng, "beach").save(buf, "JPEG", quality=90)
    (dest / "incoming").mkdir(exist_ok=True)
    (dest / "incoming/IMG_cut_short.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    (dest / "incoming/notes.jpg").write_text("shopping list: milk, eggs\n", encoding="utf-8")
    files += [DemoFile("incoming/IMG_cut_short.jpg", "bad", None), DemoFile("incoming/notes.jpg", "bad", None)]
    (dest / "README.txt").write_text("rrg-local demo library (generated)\n", encoding="utf-8")
    return files
