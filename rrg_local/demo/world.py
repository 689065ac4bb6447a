"""The demo world: a photo library of a person's own objects, with ground truth, and the trainer's benchmark.

`generate_world_library(dest, seed=...)` writes dated folders of real JPEGs (EXIF capture date and camera)
showing a few personal concepts (pairs of look-alikes: same category, one attribute apart) in varied scenes,
plus photos with only strangers' objects, and `truth.json` (per file: concepts present, boxes, scene,
nuisance values; per concept: category, attributes, look-alike group, true description).
`generate_benchmark(dest, seed=...)` writes the layout `trainer.data.load_examples` reads:
`ROOT/<concept>/<image>.jpg`, `ROOT/categories.csv` and `ROOT/lookalikes.json`. Both are deterministic for a
seed (same bytes).
Concepts, look-alikes and descriptions live in `attributes.py`, drawing in `objects.py`/`scenes.py`,
one photo in `photo.py` (all pure); this module is the I/O shell.

    python -m rrg_local.demo.world /tmp/world   # writes a library and prints its summary
"""

from __future__ import annotations

import csv
import json
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image

from rrg_local.demo.attributes import CATEGORIES, Concept, describe_truth, lookalikes, random_concept
from rrg_local.demo.photo import PhotoTruth, render_photo
from rrg_local.demo.scenes import SCENES

__all__ = [
    "CATEGORIES",
    "SCENES",
    "Concept",
    "PhotoTruth",
    "WorldManifest",
    "describe_truth",
    "generate_benchmark",
    "generate_world_library",
    "lookalikes",
    "make_concepts",
    "render_photo",
]

CAMERAS = [("Canon", "Canon EOS 250D"), ("Google", "Pixel 7"), ("Apple", "iPhone 13")]
START = datetime(2024, 1, 6, 10, 0)
LOOKALIKES = "lookalikes.json"  # in a benchmark layout: each concept's look-alike group's other members


@dataclass(frozen=True)
class WorldManifest:
    """What a generator wrote: the root, the named concepts, the image paths (relative), and `truth.json`."""

    root: Path
    concepts: dict[str, Concept]
    files: tuple[str, ...]
    truth_path: Path


def make_concepts(
    rng: random.Random, n: int, accept: Callable[[Concept], bool] | None = None
) -> tuple[dict[str, Concept], dict[str, str]]:
    """`n` named concepts and their look-alike groups: per category in turn, one random concept and then
    look-alikes of it (each one attribute apart from the first). Names are `<category>-<k>`, e.g. `mug-2`.
    `accept` restricts the draw (a train or held-out split)."""
    ok = accept or (lambda c: True)
    per_category = -(-n // len(CATEGORIES))
    group_size = max(2, min(per_category, 6))
    concepts: dict[str, Concept] = {}
    groups: dict[str, str] = {}
    group = 0
    while len(concepts) < n:
        category = CATEGORIES[group % len(CATEGORIES)]
        base = random_concept(rng, category)
        if base in concepts.values() or not ok(base):
            continue
        others = [c for c in lookalikes(base, rng) if c not in concepts.values() and ok(c)]
        rng.shuffle(others)  # which attribute tells a pair apart varies from group to group
        members = [base, *others]
        for concept in members[: min(group_size, n - len(concepts))]:
            name = f"{category.replace(' ', '-')}-{sum(c.category == category for c in concepts.values()) + 1}"
            concepts[name], groups[name] = concept, f"{category.replace(' ', '-')}-group-{group // len(CATEGORIES)}"
        group += 1
    return concepts, groups


def _exif(taken: datetime, camera: tuple[str, str]) -> bytes:
    exif = Image.Exif()
    exif[271], exif[272] = camera
    exif[306] = taken.strftime("%Y:%m:%d %H:%M:%S")
    exif.get_ifd(0x8769)[36867] = taken.strftime("%Y:%m:%d %H:%M:%S")
    return exif.tobytes()


def _save(img: Image.Image, path: Path, truth: PhotoTruth, taken: datetime, camera: tuple[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=truth.jpeg_quality, exif=_exif(taken, camera))


def _file_truth(truth: PhotoTruth, names: dict[Concept, str]) -> dict:
    return {
        "concepts": [names[c] for c in truth.concepts],
        "scene": truth.scene,
        "objects": [
            {
                "concept": names.get(o.concept) if not o.is_distractor else None,
                "category": o.concept.category,
                "attributes": o.concept.attributes(),
                "box": list(o.box),
                "distractor": o.is_distractor,
                "scale": o.scale,
                "angle": o.angle,
                "occluded": o.occluded,
            }
            for o in truth.objects
        ],
        "nuisance": {"brightness": truth.brightness, "tint": list(truth.tint), "jpeg_quality": truth.jpeg_quality},
    }


def _concept_truth(concepts: dict[str, Concept], groups: dict[str, str]) -> dict:
    return {
        name: {
            "category": c.category,
            "attributes": c.attributes(),
            "lookalike_group": groups[name],
            "description": describe_truth(c),
        }
        for name, c in concepts.items()
    }


def _write_truth(root: Path, seed: int, size: int, concepts, groups, files: dict[str, dict]) -> Path:
    doc = {"seed": seed, "size": size, "concepts": _concept_truth(concepts, groups), "files": files}
    path = root / "truth.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def generate_world_library(
    dest: Path,
    *,
    seed: int = 0,
    n_concepts: int = 6,
    photos_per_concept: int = 6,
    n_distractor_photos: int = 6,
    size: int = 224,
) -> WorldManifest:
    """Write a dated photo library under `dest` (created) and its `truth.json`; deterministic for `seed`."""
    rng = random.Random(seed)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    concepts, groups = make_concepts(rng, n_concepts)
    shots: list[tuple[str | None, str]] = []
    for name in concepts:
        offset = rng.randrange(len(SCENES))  # each concept is seen in every scene in turn
        shots += [(name, SCENES[(offset + i) % len(SCENES)]) for i in range(photos_per_concept)]
    shots += [(None, rng.choice(SCENES)) for _ in range(n_distractor_photos)]
    rng.shuffle(shots)
    names = {c: n for n, c in concepts.items()}
    files: dict[str, dict] = {}
    taken = START
    for i, (name, scene) in enumerate(shots):
        taken += timedelta(days=rng.randint(0, 4), minutes=rng.randint(5, 600))
        in_frame = [concepts[name]] if name else []
        img, truth = render_photo(in_frame, scene, rng, size, n_distractors=None if name else rng.randint(1, 3))
        rel = f"{taken:%Y}/{taken:%Y-%m-%d}/IMG_{taken:%Y%m%d}_{i:04d}.jpg"
        _save(img, dest / rel, truth, taken, rng.choice(CAMERAS))
        files[rel] = _file_truth(truth, names)
    truth_path = _write_truth(dest, seed, size, concepts, groups, files)
    return WorldManifest(dest, concepts, tuple(files), truth_path)


def generate_benchmark(
    dest: Path,
    *,
    seed: int = 0,
    n_concepts: int = 12,
    photos_per_concept: int = 5,
    size: int = 224,
    accept: Callable[[Concept], bool] | None = None,
) -> WorldManifest:
    """Write `dest/<concept>/<nn>.jpg`, `dest/categories.csv`, `dest/lookalikes.json` (each concept's look-alike
    group's other members: `trainer.data.load_lookalikes`) and `dest/truth.json`; deterministic for `seed`.
    `accept` restricts which concepts may appear (see `make_concepts`)."""
    rng = random.Random(seed)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    concepts, groups = make_concepts(rng, n_concepts, accept)
    names = {c: n for n, c in concepts.items()}
    files: dict[str, dict] = {}
    for name, concept in concepts.items():
        offset = rng.randrange(len(SCENES))
        for i in range(photos_per_concept):
            img, truth = render_photo([concept], SCENES[(offset + i) % len(SCENES)], rng, size)
            rel = f"{name}/{i:02d}.jpg"
            _save(img, dest / rel, truth, START + timedelta(days=i), CAMERAS[i % len(CAMERAS)])
            files[rel] = _file_truth(truth, names)
    with (dest / "categories.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["concept", "category"])
        writer.writerows((name, c.category) for name, c in concepts.items())
    members = {g: [n for n in concepts if groups[n] == g] for g in dict.fromkeys(groups.values())}
    alike = {name: [n for n in members[groups[name]] if n != name] for name in concepts}
    (dest / LOOKALIKES).write_text(json.dumps(alike, indent=1) + "\n", encoding="utf-8")
    truth_path = _write_truth(dest, seed, size, concepts, groups, files)
    return WorldManifest(dest, concepts, tuple(files), truth_path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m rrg_local.demo.world DEST [SEED]")
        return 0
    manifest = generate_world_library(Path(argv[0]), seed=int(argv[1]) if len(argv) > 1 else 0)
    for name, concept in manifest.concepts.items():
        print(f"{name}: {asdict(concept)}")
    print(f"{len(manifest.files)} photos; truth in {manifest.truth_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
