"""Walks library folders and yields the candidate photo files with their stat, never raising per file.

Paths are bytes end to end (`os.fsencode`), so names that are not valid UTF-8 survive exactly.
Symlinked folders are followed once (a link back to an ancestor is reported as a loop); hidden files
and folders are skipped; files whose extension is not a supported image are counted, not read. A folder
that cannot be listed is reported and remembered, so the scanner does not mistake its contents for
deleted photos.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Iterator
from dataclasses import dataclass, field

from rrg_local.library.reader import FileError


@dataclass(frozen=True)
class Entry:
    raw: bytes
    stat: os.stat_result


class RootUnavailable(Exception):
    """A library folder that is not there (unmounted drive, typo): nothing under it may be marked missing."""


@dataclass
class Walker:
    extensions: frozenset[str]
    skipped: int = 0
    unreadable_dirs: list[bytes] = field(default_factory=list)

    def is_candidate(self, name: bytes) -> bool:
        if name.startswith(b"."):
            return False
        ext = os.path.splitext(name)[1].decode("utf-8", "replace").lower()
        return ext in self.extensions

    def walk(self, root: bytes) -> Iterator[Entry | FileError]:
        try:
            st = os.stat(root)
        except OSError as exc:
            raise RootUnavailable(f"library folder not available: {os.fsdecode(root)} ({exc.strerror})") from exc
        if not stat_mod.S_ISDIR(st.st_mode):
            if stat_mod.S_ISREG(st.st_mode):
                if self.is_candidate(os.path.basename(root)):
                    yield Entry(root, st)
                else:
                    self.skipped += 1
                return
            raise RootUnavailable(f"not a folder: {os.fsdecode(root)}")
        visited: set[tuple[int, int]] = set()
        yield from self._walk_dir(root, st, visited, ancestors=frozenset())

    def _walk_dir(
        self, path: bytes, st: os.stat_result, visited: set, ancestors: frozenset
    ) -> Iterator[Entry | FileError]:
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            yield FileError(path, "symlink_loop", "symbolic link loop: this folder links back to its own parent")
            return
        if key in visited:
            return  # reached twice through links; scanned once
        visited.add(key)
        ancestors = ancestors | {key}
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.unreadable_dirs.append(path)
            reason = (
                "permission denied: cannot list the folder"
                if isinstance(exc, PermissionError)
                else (f"cannot list the folder ({exc.strerror or exc})")
            )
            yield FileError(path, "unreadable_dir", reason)
            return
        subdirs: list[tuple[bytes, os.stat_result]] = []
        for entry in entries:
            name = entry.name
            if name.startswith(b"."):
                continue
            child = entry.path
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                try:
                    subdirs.append((child, os.stat(child)))
                except OSError as exc:
                    yield self._stat_error(child, exc)
                continue
            if not self.is_candidate(name):
                if entry.is_symlink() and not os.path.exists(child):
                    yield FileError(child, "broken_link", "broken symbolic link")
                else:
                    self.skipped += 1
                continue
            try:
                child_st = os.stat(child)
            except OSError as exc:
                yield self._stat_error(child, exc)
                continue
            if not stat_mod.S_ISREG(child_st.st_mode):
                yield FileError(child, "not_file", "not a regular file")
                continue
            yield Entry(child, child_st)
        for child, child_st in subdirs:
            yield from self._walk_dir(child, child_st, visited, ancestors)

    @staticmethod
    def _stat_error(path: bytes, exc: OSError) -> FileError:
        if exc.errno == errno.ELOOP:
            return FileError(path, "symlink_loop", "symbolic link loop")
        if isinstance(exc, FileNotFoundError):
            if os.path.islink(path):
                return FileError(path, "broken_link", "broken symbolic link")
            return FileError(path, "vanished", "file vanished during the scan")
        if isinstance(exc, PermissionError):
            return FileError(path, "unreadable", "permission denied")
        return FileError(path, "unreadable", f"cannot stat ({exc.strerror or exc})")
