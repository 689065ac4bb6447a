"""Reads the key-value metadata at the head of a GGUF file, without loading the model (pure I/O).

The registry uses it to check a model pair before it is added: both files are GGUF, the projector is an
mmproj with a vision encoder, and its output width matches the text model's embedding width. Large
arrays (the tokenizer's vocabulary) are skipped, not read. `file_sha256` is the digest that model manifests
(`rrg-train export`, the shipped demo model) record and check.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import BinaryIO

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    pass


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a (large) file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(fh: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise GGUFError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(fh: BinaryIO) -> str:
    n = _read(fh, "<Q")
    if n > 1 << 24:
        raise GGUFError("corrupt GGUF header (string too long)")
    return fh.read(n).decode("utf-8", "replace")


def _value(fh: BinaryIO, vtype: int, *, keep_arrays: bool):
    if vtype in _SCALARS:
        return _read(fh, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(fh)
    if vtype == _ARRAY:
        itype, count = _read(fh, "<I"), _read(fh, "<Q")
        if itype in _SCALARS and not keep_arrays:
            fh.seek(struct.calcsize(_SCALARS[itype]) * count, 1)
            return f"<array of {count}>"
        values = [_value(fh, itype, keep_arrays=keep_arrays) for _ in range(count)]
        return values if keep_arrays else f"<array of {count}>"
    raise GGUFError(f"corrupt GGUF header (value type {vtype})")


def read_metadata(path: Path | str) -> dict[str, object]:
    """All scalar and string metadata of a GGUF file (arrays summarised)."""
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise GGUFError(f"not a GGUF file: {path}")
        version = _read(fh, "<I")
        if version < 2:
            raise GGUFError(f"GGUF version {version} is too old: {path}")
        _read(fh, "<Q")  # tensor count
        n_kv = _read(fh, "<Q")
        meta: dict[str, object] = {"GGUF.version": version}
        for _ in range(n_kv):
            key = _string(fh)
            meta[key] = _value(fh, _read(fh, "<I"), keep_arrays=False)
        return meta
