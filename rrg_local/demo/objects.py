"""Drawing demo-world objects: a `Concept` becomes an RGBA sprite of shapes and parts, with no background.

`draw_object(concept, side)` is pure and deterministic (no randomness: a concept always looks the same; the
photo adds pose and light). Bodies are filled with the concept's pattern through a mask; parts (handle,
ears, wheels, pocket, leaves, seams) are drawn large, since a small model barely learns one-patch details;
the mark is at least 2 x 14 px wide at 224 px. `photo.py` places, rotates and lights the sprites.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFilter

from rrg_local.demo.attributes import COLOURS, Concept

OUTLINE = (30, 30, 30)
LEAF = (40, 130, 50)


def pattern_fill(side: int, main: tuple, second: tuple, pattern: str) -> Image.Image:
    """A `side` x `side` RGB swatch of `main` overlaid with `pattern` in `second`."""
    img = Image.new("RGB", (side, side), main)
    draw = ImageDraw.Draw(img)
    period = max(6, side // 6)
    if pattern == "stripes":
        for y in range(0, side, period):
            draw.rectangle([0, y, side, y + period // 2 - 1], fill=second)
    elif pattern == "dots":
        r = max(2, period // 4)
        for row, y in enumerate(range(period // 2, side, period)):
            for x in range(period // 2 + (row % 2) * period // 2, side, period):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=second)
    elif pattern == "checks":
        half = max(3, period // 2)
        for y in range(0, side, half):
            for x in range((y // half) % 2 * half, side, 2 * half):
                draw.rectangle([x, y, x + half - 1, y + half - 1], fill=second)
    return img


def mark_mask(kind: str, size: int) -> Image.Image:
    """An L mask (255 inside) of the mark shape in a `size` x `size` square."""
    mask = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(mask)
    s = size - 1
    if kind == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            r = s / 2 if k % 2 == 0 else s / 4.4
            pts.append((s / 2 + r * math.cos(a), s / 2 + r * math.sin(a) + s * 0.05))
        d.polygon(pts, fill=255)
    elif kind == "heart":
        d.ellipse([0, s * 0.05, s * 0.55, s * 0.55], fill=255)
        d.ellipse([s * 0.45, s * 0.05, s, s * 0.55], fill=255)
        d.polygon([(s * 0.03, s * 0.38), (s * 0.97, s * 0.38), (s / 2, s)], fill=255)
    elif kind == "moon":
        d.ellipse([0, 0, s, s], fill=255)
        d.ellipse([s * 0.35, -s * 0.1, s * 1.2, s * 0.8], fill=0)
    else:  # diamond
        d.polygon([(s / 2, 0), (s, s / 2), (s / 2, s), (0, s / 2)], fill=255)
    return mask


def mark_colour(concept: Concept) -> tuple[int, int, int]:
    """White on dark bodies, near-black on light ones, so the mark always stands out."""
    r, g, b = COLOURS[concept.colour]
    return (25, 25, 25) if 0.3 * r + 0.59 * g + 0.11 * b > 150 else (250, 250, 250)


class _Canvas:
    """A sprite under construction: fractional coordinates in [0, 1] scaled to `side` pixels."""

    def __init__(self, concept: Concept, side: int):
        self.c, self.side = concept, side
        self.img = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.img)
        self.main, self.second = COLOURS[concept.colour], COLOURS[concept.secondary]
        self.line = max(1, side // 60)

    def px(self, *fr: float) -> list[float]:
        return [v * self.side for v in fr]

    def body(self, shapes: list[tuple[str, tuple[float, ...]]]) -> None:
        """Fill the union of ellipses/rectangles/polygons with the concept's pattern, outlined as one shape."""
        mask = Image.new("L", self.img.size, 0)
        md = ImageDraw.Draw(mask)
        for kind, fr in shapes:
            self._shape(md, kind, fr, fill=255)
        # Outline = the union's mask grown by a few pixels, painted first; the pattern goes on top.
        grown = mask.filter(ImageFilter.MaxFilter(2 * self.line + 1))
        self.img.paste(OUTLINE + (255,), (0, 0), grown)
        self.img.paste(pattern_fill(self.side, self.main, self.second, self.c.pattern), (0, 0), mask)

    def _shape(self, draw: ImageDraw.ImageDraw, kind: str, fr: tuple[float, ...], **kw) -> None:
        if kind == "ellipse":
            draw.ellipse(self.px(*fr), **kw)
        elif kind == "rect":
            draw.rounded_rectangle(self.px(*fr), radius=self.side * 0.04, **kw)
        else:
            pts = [(fr[i] * self.side, fr[i + 1] * self.side) for i in range(0, len(fr), 2)]
            draw.polygon(pts, **kw)

    def shape(self, kind: str, fr: tuple[float, ...], fill, outline=OUTLINE, width: int | None = None) -> None:
        self._shape(self.draw, kind, fr, fill=fill, outline=outline, width=width or self.line)

    def ring(self, kind: str, fr: tuple[float, ...], width: float) -> None:
        """A thick outline-only part (a handle) in the secondary colour."""
        w = max(3, int(width * self.side))
        if kind == "ellipse":
            self.draw.ellipse(self.px(*fr), outline=OUTLINE, width=w + 2 * self.line)
            self.draw.ellipse(self.px(*fr), outline=self.second, width=w)
        elif kind == "rect":
            self.draw.rectangle(self.px(*fr), outline=OUTLINE, width=w + 2 * self.line)
            self.draw.rectangle(self.px(*fr), outline=self.second, width=w)
        else:
            pts = [(fr[i] * self.side, fr[i + 1] * self.side) for i in range(0, len(fr), 2)]
            self.draw.line([*pts, pts[0], pts[1]], fill=OUTLINE, width=w + 2 * self.line, joint="curve")
            self.draw.line([*pts, pts[0], pts[1]], fill=self.second, width=w, joint="curve")

    def mark(self, cx: float, cy: float, frac: float = 0.34) -> None:
        size = max(28, int(frac * self.side))
        m = mark_mask(self.c.mark, size)
        self.img.paste(mark_colour(self.c), (int(cx * self.side - size / 2), int(cy * self.side - size / 2)), m)


def _mug(k: _Canvas) -> None:
    variant = k.c.part
    if variant == "round":
        k.ring("ellipse", (0.5, 0.3, 0.95, 0.75), 0.09)
    elif variant == "square":
        k.ring("rect", (0.55, 0.33, 0.92, 0.72), 0.09)
    else:
        k.ring("poly", (0.6, 0.28, 0.96, 0.52, 0.6, 0.78), 0.09)
    k.body([("rect", (0.06, 0.18, 0.7, 0.94))])
    k.shape("ellipse", (0.06, 0.13, 0.7, 0.25), fill=k.second)
    k.mark(0.38, 0.58)


def _teddy(k: _Canvas) -> None:
    variant = k.c.part
    for x in (0.3, 0.7):  # ears sit behind the head
        if variant == "round":
            k.shape("ellipse", (x - 0.12, 0.02, x + 0.12, 0.26), fill=k.main)
            k.shape("ellipse", (x - 0.06, 0.08, x + 0.06, 0.2), fill=k.second, outline=None)
        elif variant == "pointed":
            k.shape("poly", (x - 0.13, 0.22, x, -0.04, x + 0.13, 0.22), fill=k.main)
            k.shape("poly", (x - 0.06, 0.18, x, 0.06, x + 0.06, 0.18), fill=k.second, outline=None)
        else:
            dx = -0.14 if x < 0.5 else 0.14
            k.shape("ellipse", (x + dx - 0.09, 0.1, x + dx + 0.09, 0.42), fill=k.second)
    k.body(
        [
            ("ellipse", (0.26, 0.42, 0.74, 0.97)),
            ("ellipse", (0.27, 0.06, 0.73, 0.5)),
            ("ellipse", (0.1, 0.5, 0.34, 0.7)),
            ("ellipse", (0.66, 0.5, 0.9, 0.7)),
        ]
    )
    k.shape("ellipse", (0.4, 0.27, 0.6, 0.43), fill=k.second)
    for x in (0.4, 0.6):
        k.shape("ellipse", (x - 0.03, 0.19, x + 0.03, 0.25), fill=OUTLINE)
    k.shape("ellipse", (0.47, 0.29, 0.53, 0.33), fill=OUTLINE)
    k.mark(0.5, 0.7, 0.3)


def _ball(k: _Canvas) -> None:
    k.body([("ellipse", (0.06, 0.06, 0.94, 0.94))])
    w = max(3, int(0.08 * k.side))
    if k.c.part == "band":
        k.draw.rectangle(k.px(0.09, 0.58, 0.91, 0.74), fill=k.second, outline=OUTLINE, width=k.line)
    elif k.c.part == "cross":
        k.draw.line(k.px(0.5, 0.07, 0.5, 0.93), fill=k.second, width=w)
        k.draw.line(k.px(0.07, 0.5, 0.93, 0.5), fill=k.second, width=w)
    else:
        k.draw.arc(k.px(-0.5, 0.1, 0.32, 0.9), -60, 60, fill=k.second, width=w)
        k.draw.arc(k.px(0.68, 0.1, 1.5, 0.9), 120, 240, fill=k.second, width=w)
    k.mark(0.5, 0.32, 0.32)


def _car(k: _Canvas) -> None:
    k.body([("poly", (0.24, 0.42, 0.32, 0.16, 0.7, 0.16, 0.8, 0.42)), ("rect", (0.02, 0.38, 0.98, 0.76))])
    k.shape("poly", (0.3, 0.4, 0.36, 0.21, 0.49, 0.21, 0.49, 0.4), fill=k.second)
    k.shape("poly", (0.53, 0.4, 0.53, 0.21, 0.66, 0.21, 0.74, 0.4), fill=k.second)
    r = 0.18 if k.c.part == "big" else 0.13
    for x in (0.24, 0.76):
        k.shape("ellipse", (x - r, 0.76 - r, x + r, 0.76 + r), fill=(25, 25, 25))
        if k.c.part == "spoked":
            k.shape("ellipse", (x - 0.08, 0.68, x + 0.08, 0.84), fill=(235, 235, 235))
            for dx, dy in ((0.08, 0), (0, 0.08), (0.056, 0.056), (0.056, -0.056)):
                k.draw.line(k.px(x - dx, 0.76 - dy, x + dx, 0.76 + dy), fill=(60, 60, 60), width=k.line * 2)
        else:
            h = r * 0.45
            k.shape("ellipse", (x - h, 0.76 - h, x + h, 0.76 + h), fill=k.second)
    k.mark(0.5, 0.56, 0.3)


def _backpack(k: _Canvas) -> None:
    k.shape("rect", (0.08, 0.2, 0.2, 0.85), fill=k.second)
    k.shape("rect", (0.8, 0.2, 0.92, 0.85), fill=k.second)
    k.ring("ellipse", (0.38, 0.0, 0.62, 0.2), 0.04)
    k.body([("rect", (0.16, 0.1, 0.84, 0.96))])
    if k.c.part == "round":
        k.shape("ellipse", (0.26, 0.54, 0.74, 0.92), fill=k.second)
    elif k.c.part == "square":
        k.shape("rect", (0.26, 0.56, 0.74, 0.9), fill=k.second)
    else:
        k.shape("rect", (0.2, 0.58, 0.47, 0.9), fill=k.second)
        k.shape("rect", (0.53, 0.58, 0.8, 0.9), fill=k.second)
    k.mark(0.5, 0.32, 0.3)


def _plant(k: _Canvas) -> None:
    if k.c.part == "round":
        for cx, cy in ((0.3, 0.3), (0.5, 0.15), (0.7, 0.3), (0.42, 0.38), (0.6, 0.4)):
            k.shape("ellipse", (cx - 0.13, cy - 0.13, cx + 0.13, cy + 0.13), fill=LEAF)
    elif k.c.part == "pointy":
        for tip in ((0.1, 0.08), (0.35, 0.0), (0.65, 0.0), (0.9, 0.08), (0.5, 0.02)):
            k.shape("poly", (0.44, 0.5, tip[0], tip[1], 0.56, 0.5), fill=LEAF)
    else:
        k.shape("rect", (0.38, 0.05, 0.62, 0.52), fill=LEAF)
        k.shape("rect", (0.16, 0.2, 0.32, 0.42), fill=LEAF)
        k.shape("rect", (0.68, 0.14, 0.84, 0.36), fill=LEAF)
        k.shape("rect", (0.26, 0.34, 0.42, 0.44), fill=LEAF)
        k.shape("rect", (0.58, 0.3, 0.74, 0.4), fill=LEAF)
    k.body([("poly", (0.16, 0.5, 0.84, 0.5, 0.72, 0.98, 0.28, 0.98))])
    k.shape("rect", (0.12, 0.46, 0.88, 0.58), fill=k.second)
    k.mark(0.5, 0.77, 0.3)


DRAWERS = {
    "mug": _mug,
    "teddy bear": _teddy,
    "ball": _ball,
    "toy car": _car,
    "backpack": _backpack,
    "plant pot": _plant,
}


def draw_object(concept: Concept, side: int) -> Image.Image:
    """The concept as a `side` x `side` RGBA sprite, transparent around the object."""
    canvas = _Canvas(concept, side)
    DRAWERS[concept.category](canvas)
    return canvas.img
