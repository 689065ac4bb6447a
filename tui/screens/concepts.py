"""Concepts screen: every concept with its category and description; details of the highlighted one.

A thread worker reads the concepts, their description candidates, photos by role and suggested tags,
and whether a model is configured (`ConceptsLoaded`), each time the screen is shown. Without a model
it says how to add one.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from rrg_local.concepts.store import ConceptStore
from rrg_local.vlm import registry
from tui.database import opened
from tui.messages import ConceptsLoaded
from tui.views import MODEL_HOWTO, ConceptView, concept_details


def load_views(store: ConceptStore) -> list[ConceptView]:
    views = []
    for c in store.all():
        views.append(
            ConceptView(
                c.id,
                c.name,
                c.category,
                c.detailed or c.coarse,
                tuple((d["detailed"] or d["coarse"], d["score"], d["chosen"]) for d in store.candidates(c)),
                tuple(sorted(store.photos(c, "reference"))),
                tuple(sorted(store.photos(c, "confirmed"))),
                tuple(sorted(store.photos(c, "negative"))),
                tuple(t.photo_id for t in store.tags(c, statuses=("suggested",))),
            )
        )
    return views


class ConceptsScreen(Screen):
    DEFAULT_CSS = """
    ConceptsScreen #model-notice { height: auto; padding: 0 1; color: $warning; }
    ConceptsScreen #concepts { width: 1fr; }
    ConceptsScreen #concept-details { width: 1fr; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.concepts: list[ConceptView] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="model-notice")
        with Horizontal():
            yield DataTable(id="concepts", cursor_type="row")
            yield Static("", id="concept-details")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Concepts"
        self.query_one(DataTable).add_columns("name", "category", "suggested", "description")

    def on_screen_resume(self) -> None:
        self.query_one(DataTable).focus()
        self.load()

    @work(thread=True, exclusive=True, group="concepts-load")
    def load(self) -> None:
        settings = self.app.settings
        with opened(settings) as db:
            views = load_views(ConceptStore(db))
        models, _ = registry.entries(settings)
        self.post_message(ConceptsLoaded(views, bool(models)))

    def on_concepts_loaded(self, message: ConceptsLoaded) -> None:
        self.concepts = message.concepts
        self.query_one("#model-notice", Static).update("" if message.has_model else MODEL_HOWTO)
        table = self.query_one(DataTable)
        table.clear()
        for c in self.concepts:
            table.add_row(c.name, c.category, str(len(c.suggested)), (c.description or "-")[:60], key=str(c.id))
        if not self.concepts:
            empty = "No concepts yet: mark photos in the Library (space) and press n, or rrg concept add"
            self.query_one("#concept-details", Static).update(empty)
        else:
            self.show(0)

    @on(DataTable.RowHighlighted, "#concepts")
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show(event.cursor_row)

    def show(self, index: int) -> None:
        if 0 <= index < len(self.concepts):
            self.query_one("#concept-details", Static).update(concept_details(self.concepts[index]))
