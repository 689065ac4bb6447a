"""Concepts screen: every concept with its category and description; details of the highlighted one.

A thread worker reads the concepts, their description candidates, photos by role and suggested tags,
and whether a model is configured (`ConceptsLoaded`), each time the screen is shown. Without a model
it says how to add one.

`e` edits the highlighted concept (name, category, descriptions) and `d` removes it, each after a
modal (`tui.screens.concept_edit`); thread workers read and write through `ConceptStore` and post
`ConceptFetched`, `ConceptEdited` and `ConceptRemoved`, and the screen loads again.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from rrg_local.concepts import calibration
from rrg_local.concepts.store import ConceptError, ConceptStore
from rrg_local.concepts.tagging import TagConfig
from rrg_local.vlm import registry
from tui.database import opened
from tui.messages import ConceptEdited, ConceptFetched, ConceptRemoved, ConceptsLoaded, post_latest
from tui.screens.concept_edit import ConceptDeleteScreen, ConceptEdit, ConceptEditScreen
from tui.views import MODEL_HOWTO, ConceptView, concept_details


def load_views(store: ConceptStore) -> list[ConceptView]:
    views = []
    default = TagConfig().stage2_default
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
                calibration.explain(c, calibration.current(store.db, c.id), default),
            )
        )
    return views


def apply_edit(store: ConceptStore, concept_id: int, edit: ConceptEdit) -> str:
    """Write what changed; returns the concept's name. Checks before the first write, so a refused
    edit (`ConceptError`: a duplicate or invalid name, an empty category) changes nothing."""
    concept = store.get(concept_id)
    if not edit.category.strip():
        raise ConceptError("the category cannot be empty")
    if edit.name.strip() != concept.name:
        concept = store.rename(concept, edit.name)
    if edit.category.strip() != concept.category:
        concept = store.set_category(concept, edit.category)
    if (edit.coarse.strip(), edit.detailed.strip()) != (concept.coarse, concept.detailed):
        concept = store.set_description(concept, edit.coarse, edit.detailed, source="user")
    return concept.name


class ConceptsScreen(Screen):
    BINDINGS = [
        Binding("e", "edit", "Edit concept"),
        Binding("d", "delete", "Delete concept"),
    ]
    DEFAULT_CSS = """
    ConceptsScreen #model-notice { height: auto; padding: 0 1; color: $warning; }
    ConceptsScreen #concepts { width: 1fr; }
    ConceptsScreen #concept-details { width: 1fr; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.concepts: list[ConceptView] = []
        self.keep_id: int | None = None  # the concept to highlight after the next load

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
        post_latest(self, ConceptsLoaded(views, bool(models)))

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
            index = next((i for i, c in enumerate(self.concepts) if c.id == self.keep_id), 0)
            self.keep_id = None
            if index:
                table.move_cursor(row=index)
            self.show(index)

    @on(DataTable.RowHighlighted, "#concepts")
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show(event.cursor_row)

    def show(self, index: int) -> None:
        if 0 <= index < len(self.concepts):
            self.query_one("#concept-details", Static).update(concept_details(self.concepts[index]))

    def current(self) -> ConceptView | None:
        index = self.query_one(DataTable).cursor_row
        return self.concepts[index] if 0 <= index < len(self.concepts) else None

    # ---- edit the highlighted concept ----------------------------------------------------------------

    def action_edit(self) -> None:
        if (view := self.current()) is None:
            self.notify("no concept to edit", severity="warning")
            return
        self.fetch(view.id)

    @work(thread=True, group="concepts-edit")
    def fetch(self, concept_id: int) -> None:
        with opened(self.app.settings) as db:
            self.post_message(ConceptFetched(concept_id, ConceptStore(db).find(concept_id)))

    def on_concept_fetched(self, message: ConceptFetched) -> None:
        if message.concept is None:
            self.notify("that concept is gone", severity="warning")
            self.load()
            return

        def edited(edit: ConceptEdit | None) -> None:
            if edit is not None:
                self.save(message.concept_id, edit)

        self.app.push_screen(ConceptEditScreen(message.concept), edited)

    @work(thread=True, group="concepts-edit")
    def save(self, concept_id: int, edit: ConceptEdit) -> None:
        try:
            with opened(self.app.settings) as db:
                name = apply_edit(ConceptStore(db), concept_id, edit)
        except Exception as exc:  # ConceptError (duplicate or invalid name) or a database error
            self.post_message(ConceptEdited(concept_id, edit.name, error=str(exc)))
            return
        self.post_message(ConceptEdited(concept_id, name))

    def on_concept_edited(self, message: ConceptEdited) -> None:
        if message.error:
            self.notify(f"not saved: {message.error}", severity="error", timeout=10)
            return
        self.notify(f"<{message.name}> saved", title="concept")
        self.keep_id = message.concept_id
        self.load()

    # ---- delete the highlighted concept --------------------------------------------------------------

    def action_delete(self) -> None:
        if (view := self.current()) is None:
            self.notify("no concept to delete", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.remove_concept(view.id, view.name)

        self.app.push_screen(ConceptDeleteScreen(view.name), confirmed)

    @work(thread=True, group="concepts-edit")
    def remove_concept(self, concept_id: int, name: str) -> None:
        try:
            with opened(self.app.settings) as db:
                store = ConceptStore(db)
                store.remove(store.get(concept_id))
        except Exception as exc:  # ConceptError (already gone) or a database error
            self.post_message(ConceptRemoved(name, error=str(exc)))
            return
        self.post_message(ConceptRemoved(name))

    def on_concept_removed(self, message: ConceptRemoved) -> None:
        if message.error:
            self.notify(f"<{message.name}> not deleted: {message.error}", severity="error", timeout=10)
        else:
            self.notify(f"<{message.name}> deleted; its photos stay", title="concept")
        self.load()
