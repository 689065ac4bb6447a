"""Safe image decoding and the pure per-image values the index stores.

`open_image()` is the only place that hands bytes to Pillow: it checks the pixel count from the header
before decoding (decompression bombs), decodes JPEGs at a reduced scale when a thumbnail is all we need,
and turns Pillow's many exception types into one `ImageError(kind, reason)`. The rest are pure functions
of an opened image: EXIF metadata, the oriented thumbnail, and the perceptual hash.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image, UnidentifiedImageError

from rrg_local.config import PILLOW_BOMB_LIMIT

SUPPORTED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})

_EXIF_IFD = 0x8769
_TAG_ORIENTATION = 274
_TAG_MAKE = 271
_TAG_MODEL = 272
_TAG_DATETIME = 306
_TAG_DATETIME_ORIGINAL = 36867
_TAG_DATETIME_DIGITIZED = 36868


class ImageError(Exception):
    """A file that is not a usable image. `kind` is a short machine label, `reason` one human line."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def heif_available() -> bool:
    """Register the HEIF opener if pillow-heif is installed (the optional `heif` extra)."""
    try:
        import pillow_heif  # noqa: PLC0415 - optional dependency
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def supported_extensions() -> frozenset[str]:
    return SUPPORTED_EXTENSIONS | HEIF_EXTENSIONS if heif_available() else SUPPORTED_EXTENSIONS


@dataclass(frozen=True)
class ExifMeta:
    taken_at: str | None  # ISO 8601 local time, no zone (EXIF has none)
    orientation: int
    camera: str | None


def parse_exif_datetime(value: object) -> str | None:
    """EXIF 'YYYY:MM:DD HH:MM:SS' -> ISO 'YYYY-MM-DDTHH:MM:SS'; None for blanks and junk.

    >>> parse_exif_datetime("2023:07:14 18:02:11")
    '2023-07-14T18:02:11'
    >>> parse_exif_datetime("0000:00:00 00:00:00") is None
    True
    """
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    text = value.strip().rstrip("\x00").strip()
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y:%m:%d"):
        try:
            return datetime.strptime(text[: len(datetime(2000, 1, 1).strftime(fmt))], fmt).isoformat()
        except ValueError:
            continue
    return None


def _clean_text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip()
    return text or None


def read_exif(exif: Image.Exif) -> ExifMeta:
    """Capture time (DateTimeOriginal, then Digitized, then DateTime), orientation 1-8, camera."""
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001 - Pillow raises anything on a malformed EXIF block; it is optional data
        return ExifMeta(taken_at=None, orientation=1, camera=None)
    taken = None
    for raw in (sub.get(_TAG_DATETIME_ORIGINAL), sub.get(_TAG_DATETIME_DIGITIZED), exif.get(_TAG_DATETIME)):
        taken = parse_exif_datetime(raw)
        if taken:
            break
    orientation = exif.get(_TAG_ORIENTATION, 1)
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    make, model = _clean_text(exif.get(_TAG_MAKE)), _clean_text(exif.get(_TAG_MODEL))
    if make and model and model.lower().startswith(make.lower()):
        camera = model
    else:
        camera = " ".join(p for p in (make, model) if p) or None
    return ExifMeta(taken_at=taken, orientation=orientation, camera=camera)


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # loaded; possibly at a reduced (draft) scale
    exif: Image.Exif
    width: int  # full-resolution size, as stored in the file
    height: int
    format: str


def open_image(source: bytes | str, *, max_pixels: int, draft_size: int | None = None) -> Decoded:
    """Open and fully decode an image (first frame), refusing bombs before any pixel is decoded.

    `draft_size` lets JPEG decode at 1/2, 1/4 or 1/8 scale while staying >= that many pixels on each
    side: the practical speed limit for thumbnails. `source` is the file's bytes or its path.
    """
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    limit = min(max_pixels, PILLOW_BOMB_LIMIT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
            width, height = img.size
            if width * height > limit:
                raise ImageError(
                    "too_large",
                    f"image too large: {width}x{height} = {width * height / 1e6:.0f} MP (limit {limit / 1e6:.0f} MP)",
                )
            if width == 0 or height == 0:
                raise ImageError("corrupt", "image has zero width or height")
            exif = img.getexif()
            if draft_size and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError("too_large", f"image too large: {exc}") from exc
    except UnidentifiedImageError as exc:
        kind = sniff_format(source if isinstance(source, bytes) else _head(source))
        if kind:
            raise ImageError("corrupt", f"corrupt {kind} file (its header is damaged)") from exc
        raise ImageError("not_image", "not an image (unknown or unsupported format)") from exc
    except OSError as exc:
        text = str(exc)
        if "truncated" in text or "broken data stream" in text or "premature end" in text.lower():
            raise ImageError("truncated", f"truncated image data ({text})") from exc
        raise ImageError("corrupt", f"corrupt image data ({text})") from exc
    except (SyntaxError, ValueError, EOFError, IndexError, struct.error, MemoryError) as exc:
        raise ImageError("corrupt", f"corrupt image data ({type(exc).__name__}: {exc})") from exc
    return Decoded(image=img, exif=exif, width=width, height=height, format=img.format or "UNKNOWN")


_MAGIC = [
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
]


def sniff_format(head: bytes) -> str | None:
    r"""The image format a file's first bytes claim, if any (pure).

    >>> sniff_format(b"\x89PNG\r\n\x1a\n....")
    'PNG'
    >>> sniff_format(b"hello") is None
    True
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis"):
        return "HEIF"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(16)
    except OSError:
        return b""


def make_thumbnail(img: Image.Image, size: int, orientation: int) -> Image.Image:
    """An RGB thumbnail, long edge <= size, with the EXIF orientation applied (pure)."""
    if img.mode not in ("RGB", "L"):
        if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            img = background
        else:
            img = img.convert("RGB")
    thumb = img.copy()
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    if method is not None:
        thumb = thumb.transpose(method)
    return thumb.convert("RGB")


# EXIF orientation -> the transpose that displays the image upright (as ImageOps.exif_transpose does).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


_DCT32 = _dct_matrix(32)


def phash(img: Image.Image) -> str:
    """64-bit DCT perceptual hash as 16 hex digits: robust to re-encoding and resizing (pure)."""
    small = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    coeffs = (_DCT32 @ small @ _DCT32.T)[:8, :8]
    bits = (coeffs > np.median(coeffs)).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    """Bit distance between two hex perceptual hashes.

    >>> hamming("ff00", "ff01")
    1
    """
    return (int(a, 16) ^ int(b, 16)).bit_count()
