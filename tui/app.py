"""`RRGApp`: the Textual app behind `rrg tui`. Browse the library, review tags, see concepts, ask questions.

One mode per screen (Library, Concepts, Ask, Activity; keys 1-4), the Photo screen pushed over the
Library. The app only holds the `Settings`; every screen reads and writes through rrg_local in thread
workers and updates itself from the messages in `tui.messages`. Never imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from rrg_local.config import Settings, load_settings
from tui.screens.activity import ActivityScreen
from tui.screens.ask import AskScreen
from tui.screens.concepts import ConceptsScreen
from tui.screens.help import HelpScreen
from tui.screens.library import LibraryScreen

SCREENS_BY_KEY = {"1": "library", "2": "concepts", "3": "ask", "4": "activity"}


class RRGApp(App):
    TITLE = "rrg-local"
    MODES = {"library": LibraryScreen, "concepts": ConceptsScreen, "ask": AskScreen, "activity": ActivityScreen}
    DEFAULT_MODE = "library"
    BINDINGS = [
        Binding("1", "switch_mode('library')", "Library"),
        Binding("2", "switch_mode('concepts')", "Concepts"),
        Binding("3", "switch_mode('ask')", "Ask"),
        Binding("4", "switch_mode('activity')", "Activity"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else load_settings()

    def on_mount(self) -> None:
        self.sub_title = str(self.settings.home)
        for notice in self.settings.notices:
            self.notify(notice, title="settings", severity="warning", timeout=15)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode in SCREENS_BY_KEY.values():
            yield SystemCommand(f"Show {mode}", f"Switch to the {mode} screen", lambda m=mode: self.switch_mode(m))
        yield SystemCommand("Rescan library", "Index new and changed photos in the configured folders", self._rescan)

    def _rescan(self) -> None:
        self.switch_mode("library")
        self.call_after_refresh(self._rescan_library)

    def _rescan_library(self) -> None:
        if isinstance(self.screen, LibraryScreen):
            self.screen.action_rescan()
