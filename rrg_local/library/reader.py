"""Reads one photo file into the values the index stores: the scanner's per-file worker.

`read_photo()` runs in a thread pool (Pillow and hashlib release the GIL). It reads the file once,
hashes the bytes, and decodes only when the hash is new to the library (a moved or copied photo costs
a read and a hash, not a decode). It writes the thumbnail into the content-addressed cache before the
scanner records the row, so a row never points at a missing thumbnail. It never touches the database
and never raises for a bad file: every failure becomes a `FileError` with one readable line.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat as stat_mod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rrg_local.library.images import ImageError, make_thumbnail, open_image, phash, read_exif

# Files up to this size are read into memory once (hash + decode from the same bytes).
_IN_MEMORY_LIMIT = 64 * 1024 * 1024
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileError:
    raw: bytes
    kind: str  # empty, not_image, truncated, corrupt, too_large, unreadable, vanished, changed, ...
    reason: str
    size: int | None = None
    mtime_ns: int | None = None

    @property
    def path(self) -> str:
        return display_path(self.raw)


@dataclass(frozen=True)
class PhotoFile:
    """A readable photo. `meta` is None when the hash was already known (no decode was needed)."""

    raw: bytes
    hash: str
    size: int
    mtime_ns: int
    meta: PhotoMeta | None


@dataclass(frozen=True)
class PhotoMeta:
    width: int
    height: int
    format: str
    taken_at: str
    taken_at_source: str
    orientation: int
    camera: str | None
    phash: str
    thumb: str


def display_path(raw: bytes) -> str:
    r"""A printable, storable form of a file name, one line whatever the name: undecodable bytes shown as \xNN,
    control characters escaped (a newline as \n, a terminal escape as \x1b), so that listing a file can neither
    break a line nor restyle the terminal. Files are opened by their raw bytes, never by this.

    >>> display_path("café.jpg".encode()), display_path(b"caf\xe9.jpg")
    ('café.jpg', 'caf\\xe9.jpg')
    >>> print(display_path(b"new\nline \x1b[31mred.jpg"))
    new\nline \x1b[31mred.jpg
    """
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def thumb_relpath(digest: str) -> str:
    return f"{digest[:2]}/{digest}.jpg"


def _stat_key(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


def _hash_stream(fd: int) -> str:
    h = hashlib.sha256()
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _os_error(raw: bytes, exc: OSError, st: os.stat_result | None) -> FileError:
    size, mtime = (st.st_size, st.st_mtime_ns) if st else (None, None)
    if isinstance(exc, FileNotFoundError):
        return FileError(raw, "vanished", "file vanished during the scan", size, mtime)
    if isinstance(exc, PermissionError):
        return FileError(raw, "unreadable", "permission denied: cannot read the file", size, mtime)
    if exc.errno == errno.ELOOP:
        return FileError(raw, "symlink_loop", "symbolic link loop", size, mtime)
    return FileError(raw, "unreadable", f"cannot read the file ({exc.strerror or exc})", size, mtime)


def read_photo(
    raw: bytes,
    st: os.stat_result,
    *,
    thumbs_dir: Path,
    max_pixels: int,
    thumb_size: int,
    is_known: Callable[[str], bool],
) -> PhotoFile | FileError:
    """Hash and (if new) decode the file at `raw`, whose stat the walker saw as `st`."""
    size, mtime_ns = _stat_key(st)
    if size == 0:
        return FileError(raw, "empty", "empty file (0 bytes)", size, mtime_ns)
    data: bytes | None = None
    try:
        fd = os.open(raw, os.O_RDONLY)
    except OSError as exc:
        return _os_error(raw, exc, st)
    try:
        opened = os.fstat(fd)
        if not stat_mod.S_ISREG(opened.st_mode):
            return FileError(raw, "not_file", "not a regular file", size, mtime_ns)
        if opened.st_size <= _IN_MEMORY_LIMIT:
            chunks = []
            while chunk := os.read(fd, max(_CHUNK, opened.st_size + 1)):
                chunks.append(chunk)
            data = b"".join(chunks)
            digest = hashlib.sha256(data).hexdigest()
        else:
            digest = _hash_stream(fd)
        after = os.fstat(fd)
    except OSError as exc:
        return _os_error(raw, exc, st)
    finally:
        os.close(fd)
    if (
        _stat_key(opened) != (size, mtime_ns)
        or _stat_key(after) != (size, mtime_ns)
        or (data is not None and len(data) != size)
    ):
        return FileError(raw, "changed", "file changed while being read; it will be read again", size, mtime_ns)
    if is_known(digest):
        return PhotoFile(raw, digest, size, mtime_ns, meta=None)
    try:
        meta = _decode(data if data is not None else os.fsdecode(raw), digest, st, thumbs_dir, max_pixels, thumb_size)
    except ImageError as exc:
        return FileError(raw, exc.kind, exc.reason, size, mtime_ns)
    except OSError as exc:  # a thumbnail that cannot be written is our problem, not the photo's
        return FileError(raw, "thumbnail", f"cannot write thumbnail ({exc})", size, mtime_ns)
    return PhotoFile(raw, digest, size, mtime_ns, meta=meta)


def _decode(
    source: bytes | str, digest: str, st: os.stat_result, thumbs_dir: Path, max_pixels: int, thumb_size: int
) -> PhotoMeta:
    """`source` is the file's bytes, or its path (str) for files too big to hold in memory."""
    decoded = open_image(source, max_pixels=max_pixels, draft_size=thumb_size)
    exif = read_exif(decoded.exif)
    try:
        thumb = make_thumbnail(decoded.image, thumb_size, exif.orientation)
    except (ValueError, OSError) as exc:
        raise ImageError("corrupt", f"cannot convert pixels ({decoded.image.mode}): {exc}") from exc
    rel = thumb_relpath(digest)
    target = thumbs_dir / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{id(thumb)}.tmp")
        thumb.save(tmp, "JPEG", quality=85, optimize=False)
        os.replace(tmp, target)
    if exif.taken_at:
        taken_at, source_kind = exif.taken_at, "exif"
    else:
        taken_at, source_kind = datetime.fromtimestamp(st.st_mtime).replace(microsecond=0).isoformat(), "mtime"
    # Dimensions as the photo is displayed: orientations 5-8 swap width and height.
    width, height = (decoded.height, decoded.width) if exif.orientation >= 5 else (decoded.width, decoded.height)
    return PhotoMeta(
        width=width,
        height=height,
        format=decoded.format,
        taken_at=taken_at,
        taken_at_source=source_kind,
        orientation=exif.orientation,
        camera=exif.camera,
        phash=phash(thumb),
        thumb=rel,
    )
