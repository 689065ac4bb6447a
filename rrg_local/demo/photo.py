"""Demo-world photos: concepts placed in a scene with everything a description should leave out varied.

`render_photo(concepts, scene, rng, size)` is pure given the rng state. It draws the scene, stands each
concept in it at a random position, scale and small rotation, adds smaller distractor objects, sometimes
puts an occluder over part of a concept, and changes brightness and colour cast; the `PhotoTruth` records
where each object is and every nuisance value (the JPEG quality is chosen here and applied by the writer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from rrg_local.demo.attributes import Concept, random_concept
from rrg_local.demo.objects import draw_object
from rrg_local.demo.scenes import draw_scene

Box = tuple[int, int, int, int]
OCCLUDERS = ((224, 172, 140), (120, 120, 125), (60, 110, 70), (200, 200, 190))


@dataclass(frozen=True)
class PlacedObject:
    """One object in a photo: its box (x0, y0, x1, y1, exclusive), pose, and how much of the box is covered."""

    concept: Concept
    box: Box
    is_distractor: bool
    scale: float
    angle: float
    occluded: float


@dataclass(frozen=True)
class PhotoTruth:
    """What is where in one photo, and the nuisance parameters it was drawn with."""

    scene: str
    size: tuple[int, int]
    objects: tuple[PlacedObject, ...]
    brightness: float
    tint: tuple[float, float, float]
    jpeg_quality: int

    @property
    def concepts(self) -> tuple[Concept, ...]:
        return tuple(o.concept for o in self.objects if not o.is_distractor)


def _overlap(a: Box, b: Box) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _place(rng: random.Random, sprite_size: tuple[int, int], size: tuple[int, int], floor: int, taken: list[Box]):
    """The top-left corner, among a few random tries, whose box overlaps the boxes already placed least."""
    (sw, sh), (w, h) = sprite_size, size
    hi_y = max(0, h - sh)
    lo_y = min(hi_y, max(0, floor - sh * 2 // 3))
    best = None
    for _ in range(12):
        x, y = rng.randint(0, max(0, w - sw)), rng.randint(lo_y, hi_y)
        cost = sum(_overlap((x, y, x + sw, y + sh), t) for t in taken)
        if best is None or cost < best[0]:
            best = (cost, x, y)
        if cost == 0:
            break
    return best[1], best[2]


def _occlude(draw: ImageDraw.ImageDraw, rng: random.Random, box: Box, size: tuple[int, int]) -> float:
    """Cover 15-35% of `box` from one side with a plain object reaching in from outside; the covered fraction."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    f = rng.uniform(0.15, 0.35)
    side = rng.choice(["left", "right", "bottom"])
    if side == "left":
        rect = (x0 - bw // 3, y0 - bh // 6, x0 + int(f * bw), y1 + bh // 6)
    elif side == "right":
        rect = (x1 - int(f * bw), y0 - bh // 6, x1 + bw // 3, y1 + bh // 6)
    else:
        rect = (x0 - bw // 6, y1 - int(f * bh), x1 + bw // 6, y1 + bh // 3)
    draw.rounded_rectangle(rect, radius=max(2, min(bw, bh) // 10), fill=rng.choice(OCCLUDERS), outline=(40, 40, 40))
    return _overlap(box, rect) / max(1, bw * bh)


def render_photo(
    concepts_in_frame: list[Concept] | tuple[Concept, ...],
    scene: str,
    rng: random.Random,
    size: int | tuple[int, int] = 224,
    *,
    n_distractors: int | None = None,
    occlusion_rate: float = 0.35,
) -> tuple[Image.Image, PhotoTruth]:
    """A photo of `concepts_in_frame` in `scene` and its truth; pure given the rng state."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    w, h = size
    if min(size) < 64:
        raise ValueError(f"photo size {size} is below 64 px: objects and marks would not be drawable")
    img, floor = draw_scene(scene, rng, size)
    n_distractors = rng.choice([0, 0, 1, 1, 2]) if n_distractors is None else n_distractors
    distractors = []
    while len(distractors) < n_distractors:
        d = random_concept(rng)
        if d not in concepts_in_frame:
            distractors.append(d)
    many = len(concepts_in_frame) > 1
    placements: list[tuple[Concept, bool, float, float, Image.Image, int, int]] = []
    taken: list[Box] = []
    for concept, is_distractor in [(c, False) for c in concepts_in_frame] + [(d, True) for d in distractors]:
        scale = rng.uniform(0.2, 0.32) if is_distractor else rng.uniform(0.38, 0.5 if many else 0.62)
        angle = rng.uniform(-15, 15)
        side = max(32, int(scale * min(w, h)))  # smaller sprites hit degenerate shapes
        sprite = draw_object(concept, side).rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
        sprite = sprite.crop(sprite.getchannel("A").getbbox())
        x, y = _place(rng, sprite.size, size, floor, taken)
        taken.append((x, y, x + sprite.width, y + sprite.height))
        placements.append((concept, is_distractor, scale, angle, sprite, x, y))
    # Distractors go down first, so they never hide the concepts; occluders go over the concepts.
    draw = ImageDraw.Draw(img)
    objects = []
    for concept, is_distractor, scale, angle, sprite, x, y in sorted(placements, key=lambda p: not p[1]):
        img.paste(sprite, (x, y), sprite)
        box = (max(0, x), max(0, y), min(w, x + sprite.width), min(h, y + sprite.height))
        occluded = 0.0
        if not is_distractor and rng.random() < occlusion_rate:
            occluded = round(_occlude(draw, rng, box, size), 3)
        objects.append(PlacedObject(concept, box, is_distractor, round(scale, 3), round(angle, 2), occluded))
    brightness = round(rng.uniform(0.7, 1.25), 3)
    tint = tuple(round(rng.uniform(0.92, 1.08), 3) for _ in range(3))
    arr = np.asarray(img, dtype=np.float32) * (brightness * np.asarray(tint, dtype=np.float32))
    img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    truth = PhotoTruth(scene, size, tuple(objects), brightness, tint, rng.randint(55, 95))
    return img, truth
