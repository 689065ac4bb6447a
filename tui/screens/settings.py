"""Settings screen: library folders, the model in use, the watcher's timings, the size guard.

`ctrl+s` (or Save) checks the form (`parse_form`, pure), writes `config.toml` with `save_settings`,
switches the model with `registry.use`, and gives the app the new `Settings` (the watcher restarts on
the new folders). Models are only chosen here; adding one stays `rrg model add` / `rrg model pull`.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static, TextArea

from rrg_local.config import FRACTIONS, Settings, save_settings
from rrg_local.vlm import registry
from tui.views import MODEL_HOWTO

LABELS = {
    "debounce_s": "seconds a file must be quiet before the watcher indexes it",
    "rescan_interval_s": "full rescan while watching, every N seconds (0: never)",
    "max_pixels": "refuse images with more pixels than this",
    "scan_workers": "decoding threads (0: one per core)",
    "thumb_size": "thumbnail size in pixels (new photos)",
}
# Every number in Settings (thresholds included, whatever rrg_local adds): field name -> int or float.
NUMBERS = {
    f.name: type(f.default)
    for f in fields(Settings)
    if isinstance(f.default, int | float) and not isinstance(f.default, bool)
}


def parse_form(settings: Settings, folders_text: str, numbers: dict[str, str]) -> Settings:
    """New settings from the form's text; ValueError says which field is wrong.

    >>> from pathlib import Path
    >>> s = parse_form(Settings(home=Path("/h")), "/p/a\\n\\n /p/b ", {"debounce_s": "2.5"})
    >>> s.folders, s.debounce_s
    ((PosixPath('/p/a'), PosixPath('/p/b')), 2.5)
    >>> parse_form(Settings(home=Path("/h")), "", {"scan_workers": "-1"})
    Traceback (most recent call last):
    ValueError: scan_workers: must be a number >= 0
    >>> parse_form(Settings(home=Path("/h")), "", {"tag_sure_margin": "1"})
    Traceback (most recent call last):
    ValueError: tag_sure_margin: must be below 1
    """
    folders = tuple(Path(line.strip()).expanduser().absolute() for line in folders_text.splitlines() if line.strip())
    changes: dict = {"folders": folders}
    for name, text in numbers.items():
        kind = NUMBERS[name]
        try:
            value = kind(text.strip())
        except ValueError:
            value = -1
        if value < 0:
            raise ValueError(f"{name}: must be a number >= 0")
        if name in FRACTIONS and value >= 1:
            raise ValueError(f"{name}: must be below 1")
        changes[name] = value
    return replace(settings, **changes)


class SettingsScreen(Screen):
    BINDINGS = [Binding("ctrl+s", "save", "Save", priority=True)]
    DEFAULT_CSS = """
    SettingsScreen VerticalScroll { padding: 0 2; }
    SettingsScreen Label { margin-top: 1; }
    SettingsScreen #folders { height: 6; }
    SettingsScreen Horizontal { height: auto; margin-top: 1; }
    SettingsScreen #settings-status { height: auto; margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        settings = self.app.settings
        models, default = registry.entries(settings)
        yield Header()
        with VerticalScroll():
            yield Label("Library folders, one per line (only ever read):")
            yield TextArea("\n".join(str(f) for f in settings.folders), id="folders")
            yield Label("Model in use:")
            chosen = {"value": default} if default in {m.name for m in models} else {}
            yield Select(
                [(f"{m.name}  ({m.gguf.name})", m.name) for m in models],
                prompt="no model registered" if not models else "choose a model",
                id="model",
                **chosen,
            )
            if not models:
                yield Static(MODEL_HOWTO, id="model-howto")
            for name in NUMBERS:
                yield Label(f"{name}: {LABELS[name]}" if name in LABELS else name)
                yield Input(str(getattr(settings, name)), id=name)
            with Horizontal():
                yield Button("Save (ctrl+s)", variant="primary", id="save")
            yield Static(f"saved to {settings.config_path}", id="settings-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Settings"

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        status = self.query_one("#settings-status", Static)
        numbers = {name: self.query_one(f"#{name}", Input).value for name in NUMBERS}
        try:
            new = parse_form(self.app.settings, self.query_one("#folders", TextArea).text, numbers)
        except ValueError as exc:
            status.update(f"not saved: {exc}")
            self.notify(str(exc), title="not saved", severity="error")
            return
        path = save_settings(new)
        model = self.query_one("#model", Select).value
        if isinstance(model, str):
            registry.use(new, model)
        folders_changed = new.folders != self.app.settings.folders
        self.app.settings = new
        if folders_changed:
            self.app.start_watching()
        status.update(f"saved to {path}")
        self.notify(f"saved to {path}", title="settings")
