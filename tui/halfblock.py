"""Thumbnails as text: a PIL image becomes Rich `Text` of upper-half-block characters.

Pure: `halfblock()` maps pixels to characters, two pixel rows per text row (the top pixel is the
foreground of "▀", the bottom one its background). The Photo screen loads the thumbnail in a worker
and hands the result to a `Static`.
"""

from __future__ import annotations

from PIL import Image
from rich.style import Style
from rich.text import Text

UPPER_HALF = "\u2580"


def fit(size: tuple[int, int], width: int) -> tuple[int, int]:
    """Pixel size that is `width` columns wide and keeps the aspect ratio (even height: whole rows).

    >>> fit((320, 240), 40)
    (40, 30)
    """
    w, h = size
    if w <= width:
        return w, h + h % 2
    height = max(2, round(h * width / w))
    return width, height + height % 2


def halfblock(image: Image.Image, width: int | None = None) -> Text:
    """Text `width` columns wide (default: the image's own width) and ceil(height / 2) rows high."""
    img = image.convert("RGB")
    if width is not None and img.width > width:
        img = img.resize(fit(img.size, width), Image.Resampling.BILINEAR)
    w, h = img.size
    px = img.load()
    text = Text(no_wrap=True, overflow="crop")
    for y in range(0, h, 2):
        for x in range(w):
            top = "#{:02x}{:02x}{:02x}".format(*px[x, y])
            bottom = "#{:02x}{:02x}{:02x}".format(*px[x, y + 1]) if y + 1 < h else None
            text.append(UPPER_HALF, Style(color=top, bgcolor=bottom))
        if y + 2 < h:
            text.append("\n")
    return text
