"""Photo preparation for the model: safe decode, EXIF orientation, a size cap, a content key (pure I/O-light).

The model never sees the file's bytes: we decode with the library's guarded decoder (pixel limit before
decoding), apply the orientation, convert to RGB and downscale so the long side is at most `max_side`,
then hand raw pixels to libmtmd. The key is a hash of exactly those pixels, so the runtime's embedding
cache hits for the same photo at any path and misses when preparation settings change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from rrg_local.library.images import ImageError, make_thumbnail, open_image, read_exif
from rrg_local.vlm.protocol import ImageRef


@dataclass(frozen=True)
class PreparedImage:
    key: str
    width: int
    height: int
    rgb: bytes  # width * height * 3


def prepare(ref: ImageRef, *, max_side: int, max_pixels: int) -> PreparedImage:
    """Decode and normalise a photo for the vision encoder. Raises ImageError with one readable line."""
    src = ref.source
    if isinstance(src, Image.Image):
        img, orientation = src, ref.orientation or 1
    else:
        data = src if isinstance(src, bytes) else None
        if data is None:
            try:
                data = Path(src).read_bytes()
            except FileNotFoundError as exc:
                raise ImageError("vanished", f"image not found: {src}") from exc
            except OSError as exc:
                raise ImageError("unreadable", f"cannot read image {src}: {exc.strerror or exc}") from exc
        decoded = open_image(data, max_pixels=max_pixels, draft_size=max_side)
        img = decoded.image
        orientation = ref.orientation or read_exif(decoded.exif).orientation
    rgb = make_thumbnail(img, max_side, orientation)
    raw = rgb.tobytes()
    key = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + raw).hexdigest()
    return PreparedImage(key=key, width=rgb.width, height=rgb.height, rgb=raw)
