"""Teach modal: name and category of a new concept made from the photos marked in the Library.

Dismisses with `(name, category)`, or None on `escape`/Cancel; the Library screen does the work.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class TeachScreen(ModalScreen[tuple[str, str] | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    TeachScreen { align: center middle; }
    TeachScreen > Vertical { width: 70; height: auto; border: round $accent; background: $surface; padding: 1 2; }
    TeachScreen Input { margin-bottom: 1; }
    TeachScreen Horizontal { height: auto; }
    """

    def __init__(self, photos: int) -> None:
        super().__init__()
        self.photos = photos

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"New concept from {self.photos} reference photo{'s' if self.photos != 1 else ''}")
            yield Input(placeholder="name, e.g. Bo", id="concept-name")
            yield Input(placeholder="category, e.g. dog, mug, person", id="concept-category")
            yield Label("", id="teach-error")
            with Horizontal():
                yield Button("Create", variant="primary", id="create")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#concept-name", Input).focus()

    @on(Input.Submitted, "#concept-name")
    def next_field(self) -> None:
        self.query_one("#concept-category", Input).focus()

    @on(Input.Submitted, "#concept-category")
    @on(Button.Pressed, "#create")
    def create(self) -> None:
        name = self.query_one("#concept-name", Input).value.strip()
        category = self.query_one("#concept-category", Input).value.strip()
        if not name or not category:
            self.query_one("#teach-error", Label).update("both a name and a category, please")
            return
        self.dismiss((name, category))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
