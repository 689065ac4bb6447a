"""`RRGApp`: the Textual app behind `rrg tui`. Browse the library, review tags, teach concepts, ask questions.

One mode per screen (Library, Concepts, Ask, Activity, Settings; keys 1-5), the Photo screen pushed
over the Library. The app holds the `Settings` and, when folders are configured, runs the watcher
(`rrg_local.library.watch`) in a thread worker: whatever it indexes is posted as `LibraryChanged` to
the screen on show, so new photos and bad files appear without a restart. Every screen reads and
writes through rrg_local in thread workers and updates itself from the messages in `tui.messages`.
Every notification is also kept (`RRGApp.notes`) for the Activity screen. Never imports torch.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, get_current_worker

from rrg_local.config import Settings, load_settings
from tui.database import opened
from tui.images import graphics_image_class
from tui.messages import LibraryChanged
from tui.screens.activity import ActivityScreen
from tui.screens.ask import AskScreen
from tui.screens.concepts import ConceptsScreen
from tui.screens.help import HelpScreen
from tui.screens.library import LibraryScreen
from tui.screens.settings import SettingsScreen

SCREENS_BY_KEY = {"1": "library", "2": "concepts", "3": "ask", "4": "activity", "5": "settings"}
WATCH_GROUP = "watch"
NOTES_KEPT = 100


@dataclass(frozen=True)
class Note:
    """One notification, kept after its toast is gone (the Activity screen lists them)."""

    at: str  # HH:MM:SS, local time
    severity: str
    title: str
    message: str


class _Stop:
    """Set when the app asked the watcher to stop, or cancelled its worker (what happens on exit)."""

    def __init__(self, event: threading.Event, worker: Worker) -> None:
        self.event, self.worker = event, worker

    def is_set(self) -> bool:
        return self.event.is_set() or self.worker.is_cancelled


class RRGApp(App):
    TITLE = "rrg-local"
    MODES = {
        "library": LibraryScreen,
        "concepts": ConceptsScreen,
        "ask": AskScreen,
        "activity": ActivityScreen,
        "settings": SettingsScreen,
    }
    DEFAULT_MODE = "library"
    BINDINGS = [
        Binding("1", "switch_mode('library')", "Library"),
        Binding("2", "switch_mode('concepts')", "Concepts"),
        Binding("3", "switch_mode('ask')", "Ask"),
        Binding("4", "switch_mode('activity')", "Activity"),
        Binding("5", "switch_mode('settings')", "Settings"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, settings: Settings | None = None, *, watch: bool = True, graphics: bool | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else load_settings()
        self.watch_folders = watch
        self.image_class = graphics_image_class() if graphics is None or graphics else None
        self.watch_stop = threading.Event()
        self.watch_ready = threading.Event()
        self.library_changes = 0  # screens not shown when the watcher reported load again on show
        self.auto_tagging = False  # a background pass over newly arrived photos is running
        self.notes: deque[Note] = deque(maxlen=NOTES_KEPT)  # every notification, newest last

    def notify(self, message: str, *, title: str = "", severity="information", timeout=None, markup=True) -> None:
        """A toast, as Textual shows it, and a `Note` kept for the Activity screen (toasts vanish)."""
        self.notes.append(Note(datetime.now().strftime("%H:%M:%S"), str(severity), title, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def on_mount(self) -> None:
        self.sub_title = str(self.settings.home)
        for notice in self.settings.notices:
            self.notify(notice, title="settings", severity="warning", timeout=15)
        self.start_watching()

    def on_unmount(self) -> None:
        self.watch_stop.set()

    # ---- the watcher ------------------------------------------------------------------------------

    def start_watching(self) -> None:
        """(Re)start the watcher on the configured folders; stops the old one first."""
        self.watch_stop.set()
        self.watch_stop = threading.Event()
        self.watch_ready = threading.Event()
        if self.watch_folders and self.settings.folders:
            self.run_watcher(self.settings, self.watch_stop, self.watch_ready)

    @work(thread=True, group=WATCH_GROUP)
    def run_watcher(self, settings: Settings, stop: threading.Event, ready: threading.Event) -> None:
        from rrg_local.library.scan import Scanner
        from rrg_local.library.watch import Watcher

        def reported(what: str, report) -> None:
            c = report.counts()
            if what == "move" or c["new_photos"] or c["new_paths"] or c["missing"] or c["errors"]:
                errors = [f"{e.path}: {e.reason}" for e in report.errors]
                self.post_message(LibraryChanged(what, c, errors))

        roots = [r for r in settings.folders if r.is_dir()]
        if not roots:
            ready.set()
            return
        with opened(settings) as db:
            watcher = Watcher(
                Scanner(db, settings),
                roots,
                debounce_s=settings.debounce_s,
                rescan_interval_s=settings.rescan_interval_s,
                on_report=reported,
            )
            threading.Thread(target=lambda: (watcher.ready.wait(), ready.set()), daemon=True).start()
            watcher.run(_Stop(stop, get_current_worker()))

    def on_library_changed(self, message: LibraryChanged) -> None:
        self.library_changes += 1
        for error in message.errors:
            self.notify(error, title="could not index", severity="error", timeout=10)
        if message.counts.get("new_photos") and not self.auto_tagging and self._has_concepts_and_model():
            self.auto_tagging = True
            self.auto_tag()
        for screen in self.screen_stack:
            if hasattr(screen, "on_library_changed"):
                screen.post_message(LibraryChanged(message.what, message.counts, message.errors))

    def _has_concepts_and_model(self) -> bool:
        from rrg_local.vlm import registry

        try:
            registry.get(self.settings)
        except registry.RegistryError:
            return False
        with opened(self.settings) as db:
            return bool(db.execute("SELECT 1 FROM concepts LIMIT 1").fetchone())

    @work(thread=True, exclusive=True, group="auto-tag")
    def auto_tag(self) -> None:
        """New photos from the watcher are tagged as they arrive (the Activity screen's `t` does the rest)."""
        from tui import tasks

        try:
            summary = tasks.tag_library(self.settings, lambda *_: None)
        except Exception as exc:  # RegistryError, VisionError, a database error: say it, keep the app alive
            summary = f"tagging new photos failed: {exc}"
        self.call_from_thread(self._auto_tagged, summary)

    def _auto_tagged(self, summary: str) -> None:
        self.auto_tagging = False
        self.library_changes += 1
        self.notify(summary, title="new photos tagged")
        for screen in self.screen_stack:
            if hasattr(screen, "on_library_changed"):
                screen.post_message(LibraryChanged("tagged", {}, []))

    # ---- commands ---------------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode in SCREENS_BY_KEY.values():
            yield SystemCommand(f"Show {mode}", f"Switch to the {mode} screen", lambda m=mode: self.switch_mode(m))
        yield SystemCommand("Rescan library", "Index new and changed photos in the configured folders", self._rescan)
        yield SystemCommand("Tag now", "Embed and tag the photos waiting for it (needs a model)", self._tag_now)

    def _rescan(self) -> None:
        self.switch_mode("library")
        self.call_after_refresh(self._rescan_library)

    def _rescan_library(self) -> None:
        if isinstance(self.screen, LibraryScreen):
            self.screen.action_rescan()

    def _tag_now(self) -> None:
        self.switch_mode("activity")
        self.call_after_refresh(lambda: isinstance(self.screen, ActivityScreen) and self.screen.action_tag())
