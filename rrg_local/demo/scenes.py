"""Demo-world backgrounds: six scenes with simple cues (sea and sand, grass and flowers, tiles and counter...).

`draw_scene(scene, rng, size)` is pure given the rng state; it returns the RGB background and the y of the
floor line, where `photo.py` stands objects. The scene is what a description of the object must leave out.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

SCENES = ("beach", "grass", "kitchen", "snow", "living room", "street")


def _jitter(rng: random.Random, colour: tuple[int, int, int], amount: int = 12) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)


def _sky(draw: ImageDraw.ImageDraw, w: int, horizon: int, top: tuple, bottom: tuple) -> None:
    for y in range(horizon):
        t = y / max(1, horizon - 1)
        draw.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))


def _beach(draw, rng, w, h, horizon):
    _sky(draw, w, horizon, _jitter(rng, (90, 160, 230)), (190, 225, 250))
    sea = int(horizon + (h - horizon) * rng.uniform(0.15, 0.3))
    draw.rectangle([0, horizon, w, sea], fill=_jitter(rng, (30, 110, 170)))
    draw.rectangle([0, sea, w, h], fill=_jitter(rng, (232, 208, 150)))
    for _ in range(3):
        x, y = rng.randint(0, w), rng.randint(horizon + 1, max(horizon + 1, sea - 2))
        draw.line([(x, y), (x + w // 10, y)], fill=(235, 245, 255), width=max(1, h // 150))
    return sea


def _grass(draw, rng, w, h, horizon):
    _sky(draw, w, horizon, _jitter(rng, (110, 170, 240)), (200, 230, 250))
    draw.rectangle([0, horizon, w, h], fill=_jitter(rng, (80, 150, 60)))
    for _ in range(w // 6):
        x, y = rng.randint(0, w), rng.randint(horizon, h)
        draw.line([(x, y), (x + rng.randint(-2, 2), y - h // 40)], fill=(50, 110, 40), width=1)
    for _ in range(6):
        x, y, r = rng.randint(0, w), rng.randint(horizon + 4, h), max(2, h // 80)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=rng.choice([(250, 250, 250), (250, 220, 60)]))
    return horizon


def _kitchen(draw, rng, w, h, horizon):
    wall = _jitter(rng, (225, 222, 210))
    draw.rectangle([0, 0, w, horizon], fill=wall)
    tile = max(8, w // 12)
    for x in range(0, w, tile):
        draw.line([(x, 0), (x, horizon)], fill=(180, 180, 175), width=1)
    for y in range(0, horizon, tile):
        draw.line([(0, y), (w, y)], fill=(180, 180, 175), width=1)
    draw.rectangle([0, horizon, w, h], fill=_jitter(rng, (120, 90, 65)))
    draw.rectangle([0, horizon, w, horizon + max(2, h // 50)], fill=(90, 65, 45))
    return horizon


def _snow(draw, rng, w, h, horizon):
    _sky(draw, w, horizon, _jitter(rng, (170, 185, 205)), (220, 228, 238))
    peak = rng.randint(w // 4, 3 * w // 4)
    draw.polygon([(0, horizon), (peak, horizon - h // 5), (w, horizon)], fill=(150, 160, 180))
    draw.rectangle([0, horizon, w, h], fill=_jitter(rng, (245, 247, 252), 5))
    for _ in range(w // 5):
        x, y, r = rng.randint(0, w), rng.randint(0, h), max(1, h // 160)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255))
    return horizon


def _living_room(draw, rng, w, h, horizon):
    draw.rectangle([0, 0, w, horizon], fill=_jitter(rng, (200, 180, 150)))
    sofa = _jitter(rng, (110, 70, 80), 25)
    x0 = rng.randint(-w // 4, w // 3)
    draw.rounded_rectangle([x0, horizon - h // 4, x0 + w // 2 + w // 4, horizon + h // 20], radius=h // 30, fill=sofa)
    fx = rng.randint(w // 20, w - w // 5)
    draw.rectangle([fx, h // 12, fx + w // 7, h // 12 + h // 6], fill=(240, 240, 230), outline=(90, 70, 50), width=2)
    floor = _jitter(rng, (165, 120, 75))
    draw.rectangle([0, horizon, w, h], fill=floor)
    for y in range(horizon, h, max(6, h // 14)):
        draw.line([(0, y), (w, y)], fill=(130, 90, 55), width=1)
    return horizon


def _street(draw, rng, w, h, horizon):
    _sky(draw, w, horizon, _jitter(rng, (120, 165, 220)), (210, 220, 235))
    x = 0
    while x < w:
        bw, bh = rng.randint(w // 8, w // 4), rng.randint(h // 8, horizon)
        draw.rectangle([x, horizon - bh, x + bw, horizon], fill=_jitter(rng, (150, 140, 135), 30))
        for wy in range(horizon - bh + 6, horizon - 6, max(8, h // 18)):
            draw.rectangle([x + 4, wy, x + bw - 4, wy + 3], fill=(80, 90, 110))
        x += bw
    draw.rectangle([0, horizon, w, h], fill=_jitter(rng, (85, 85, 90)))
    mid = (horizon + h) // 2
    for dx in range(0, w, w // 5):
        draw.rectangle([dx, mid, dx + w // 10, mid + max(2, h // 60)], fill=(240, 240, 240))
    return horizon


_DRAWERS = {
    "beach": _beach,
    "grass": _grass,
    "kitchen": _kitchen,
    "snow": _snow,
    "living room": _living_room,
    "street": _street,
}


def draw_scene(scene: str, rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, int]:
    """(background, floor_y) for `scene`; the horizon height and the scene's details vary with the rng."""
    w, h = size
    img = Image.new("RGB", size)
    horizon = int(h * rng.uniform(0.3, 0.5))
    floor = _DRAWERS[scene](ImageDraw.Draw(img), rng, w, h, horizon)
    return img, floor
