"""Follows library folders with watchdog and keeps the index current, debounced.

`Watcher.run()` starts the OS observer, does a full scan (so nothing that changed while we were away is
missed), then loops: file events are coalesced per path and handed to the `Scanner` once the path has
been quiet for `debounce_s`; renames are applied as renames (photo ids and tags stay); a temp file that
is renamed over a photo (an atomic save) costs one re-index of the photo and nothing for the temp file.
Every `rescan_interval_s` a full rescan (stat-only for unchanged files) catches events the OS dropped.
The observer thread only enqueues; all database work happens in the thread that calls `run()`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from rrg_local.library.scan import Scanner, ScanReport


@dataclass(frozen=True)
class _Move:
    src: bytes
    dest: bytes
    at: float


class _Enqueue(FileSystemEventHandler):
    def __init__(self, events: queue.SimpleQueue):
        self.events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or getattr(event, "is_synthetic", False):
            return
        if event.is_directory and event.event_type == "modified":
            return
        src = os.fsencode(event.src_path)
        dest = os.fsencode(event.dest_path) if event.event_type == "moved" else b""
        self.events.put((event.event_type, src, dest, time.monotonic()))


class Watcher:
    def __init__(
        self,
        scanner: Scanner,
        roots: Sequence[Path],
        *,
        debounce_s: float,
        rescan_interval_s: float,
        on_report: Callable[[str, ScanReport], None] | None = None,
    ):
        self.scanner = scanner
        self.roots = [Path(r).absolute() for r in roots]
        self.debounce_s = debounce_s
        self.rescan_interval_s = rescan_interval_s
        self.on_report = on_report
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[bytes, float] = {}
        self._moves: list[_Move] = []
        self._observer = None
        self.ready = threading.Event()  # set once the initial scan is done (tests and the TUI wait on it)

    def run(self, stop: threading.Event, *, initial_scan: bool = True) -> None:
        """Watch until `stop` is set. Starts and stops the observer itself."""
        self._observer = Observer()
        handler = _Enqueue(self._events)
        for root in self.roots:
            self._observer.schedule(handler, str(root), recursive=True)
        self._observer.start()
        try:
            if initial_scan:
                self._report("scan", self.scanner.scan(self.roots))
            self.ready.set()
            last_full = time.monotonic()
            while not stop.is_set():
                self._drain(timeout=min(0.2, self.debounce_s / 2 or 0.05))
                self.process_due(time.monotonic())
                if self.rescan_interval_s and time.monotonic() - last_full >= self.rescan_interval_s:
                    self._report("rescan", self.scanner.scan(self.roots))
                    last_full = time.monotonic()
        finally:
            self._observer.stop()
            self._observer.join(timeout=5)

    def _drain(self, timeout: float) -> None:
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._note(*item)
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return

    def _note(self, kind: str, src: bytes, dest: bytes, at: float) -> None:
        if kind == "moved":
            # A temp file renamed into place was never indexed: drop its pending look.
            self._pending.pop(src, None)
            self._moves.append(_Move(src, dest, at))
        else:
            self._pending[src] = at

    def process_due(self, now: float) -> None:
        """Apply renames, then index paths that have been quiet for `debounce_s`."""
        cutoff = now - self.debounce_s
        moves = [m for m in self._moves if m.at <= cutoff and m.dest not in self._pending]
        for move in moves:
            self._moves.remove(move)
            self._report("move", self.scanner.move(move.src, move.dest))
        due = [p for p, t in self._pending.items() if t <= cutoff]
        if due:
            for p in due:
                del self._pending[p]
            self._report("change", self.scanner.scan_paths(sorted(due)))

    def _report(self, what: str, report: ScanReport) -> None:
        if self.on_report:
            self.on_report(what, report)
