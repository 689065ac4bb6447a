"""Concept modals of the Concepts screen: edit a concept (`e`) and confirm its removal (`d`).

`ConceptEditScreen` dismisses with a `ConceptEdit` (every field, as typed) or None on `escape`/Cancel;
`ConceptDeleteScreen` dismisses with True (Delete, `y`) or False (`escape`, No, `n`). The Concepts
screen does the work, in a thread worker, through `ConceptStore`.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from rrg_local.concepts.store import Concept


@dataclass(frozen=True)
class ConceptEdit:
    name: str
    category: str
    coarse: str
    detailed: str


class ConceptEditScreen(ModalScreen[ConceptEdit | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    ConceptEditScreen { align: center middle; }
    ConceptEditScreen > Vertical {
        width: 90; height: auto; border: round $accent; background: $surface; padding: 1 2;
    }
    ConceptEditScreen Input { margin-bottom: 1; }
    ConceptEditScreen #edit-error { color: $error; }
    ConceptEditScreen Horizontal { height: auto; }
    """

    def __init__(self, concept: Concept) -> None:
        super().__init__()
        self.concept = concept

    def compose(self) -> ComposeResult:
        c = self.concept
        with Vertical():
            yield Label(f"Edit <{c.name}>  (enter saves, escape cancels)")
            yield Label("name")
            yield Input(c.name, placeholder="name, e.g. Bo", id="edit-name")
            yield Label("category")
            yield Input(c.category, placeholder="category, e.g. dog, mug, person", id="edit-category")
            yield Label("coarse description")
            yield Input(c.coarse, placeholder="a few words, e.g. a small white dog", id="edit-coarse")
            yield Label("detailed description")
            yield Input(c.detailed, placeholder="what tells it apart from others like it", id="edit-detailed")
            yield Label("", id="edit-error")
            with Horizontal():
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#edit-name", Input).focus()

    def value(self, selector: str) -> str:
        return self.query_one(selector, Input).value.strip()

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def save(self) -> None:
        edit = ConceptEdit(*(self.value(f"#edit-{f}") for f in ("name", "category", "coarse", "detailed")))
        if not edit.name or not edit.category:
            self.query_one("#edit-error", Label).update("both a name and a category, please")
            return
        self.dismiss(edit)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConceptDeleteScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("n", "cancel", "No", show=False),
        Binding("y", "delete", "Delete", show=False),
    ]
    DEFAULT_CSS = """
    ConceptDeleteScreen { align: center middle; }
    ConceptDeleteScreen > Vertical {
        width: 60; height: auto; border: round $error; background: $surface; padding: 1 2;
    }
    ConceptDeleteScreen Label { margin-bottom: 1; }
    ConceptDeleteScreen Horizontal { height: auto; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.concept_name = name

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Delete <{self.concept_name}>? Its tags go; photos stay.", id="delete-question")
            with Horizontal():
                yield Button("Delete", variant="error", id="delete")
                yield Button("No", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # enter on its own keeps the concept

    @on(Button.Pressed, "#delete")
    def action_delete(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_cancel(self) -> None:
        self.dismiss(False)
