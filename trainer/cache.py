"""Build cache: content-keyed folders for expensive, deterministic build products (tiny models, GGUF files).

`cached_build(key_parts, builder, name=...)` is the only writer of cache entries; `trainer.tiny` and
`trainer.gguf.fetch_converter` call it (directly or through `atomic_dir`) and never write into the cache
root themselves. An entry is a folder `<root>/<name>-<hash>/` that exists only once it is complete: the
builder writes into a temporary sibling folder which is renamed into place at the end, so an interrupted
build leaves at most a `.tmp-*` folder behind, never a half entry.

The key hashes the caller's parts (a config dict, a builder version) together with the versions of the
tools that shape the output (llama-cpp-python, transformers, torch, tokenizers), so upgrading any of them
rebuilds. The root is `$RRG_CACHE` if set, else the per-user cache folder of `rrg-local`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

CACHE_ENV = "RRG_CACHE"
TOOL_PACKAGES = ("llama-cpp-python", "transformers", "torch", "tokenizers")
KEY_FILE = "cache-key.json"


def cache_root() -> Path:
    """`$RRG_CACHE` when set, else `platformdirs.user_cache_dir("rrg-local")`."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rrg-local"))


def package_version(name: str) -> str:
    """The installed version of a distribution, or "absent" (absence is part of a key, not an error)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def toolchain_versions() -> dict[str, str]:
    """Versions of the packages whose output format or numerics a cached build depends on."""
    return {name: package_version(name) for name in TOOL_PACKAGES}


def cache_key(key_parts: Mapping[str, Any]) -> str:
    """A short stable hash of the caller's parts plus the toolchain versions.

    >>> a = cache_key({"config": {"hidden": 64}, "builder": 1})
    >>> a == cache_key({"builder": 1, "config": {"hidden": 64}})
    True
    >>> a == cache_key({"config": {"hidden": 128}, "builder": 1})
    False
    """
    payload = {"parts": dict(key_parts), "tools": toolchain_versions()}
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def entry_dir(name: str, key_parts: Mapping[str, Any], root: Path | None = None) -> Path:
    """Where the entry for these parts lives (whether or not it has been built yet)."""
    return (root or cache_root()) / f"{name}-{cache_key(key_parts)}"


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `final`; on success rename it to `final`, on error delete it.

    If another process completed `final` first, its entry wins and ours is discarded: entries with the same
    key hold the same content.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        try:
            tmp.rename(final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def cached_build(
    key_parts: Mapping[str, Any],
    builder: Callable[[Path], None],
    *,
    name: str,
    root: Path | None = None,
) -> Path:
    """Return the entry folder for `key_parts`, calling `builder(tmp_dir)` to fill it only when missing.

    `builder` writes its files into the folder it is given (relative layout is preserved after the rename).
    A `cache-key.json` with the parts and tool versions is added for humans.
    """
    final = entry_dir(name, key_parts, root)
    if final.is_dir():
        return final
    with atomic_dir(final) as tmp:
        builder(tmp)
        payload = {"parts": dict(key_parts), "tools": toolchain_versions()}
        (tmp / KEY_FILE).write_text(json.dumps(payload, sort_keys=True, indent=2, default=str) + "\n")
    return final
