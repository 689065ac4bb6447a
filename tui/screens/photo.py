"""Photo screen: metadata, the thumbnail as half-block text, the photo's tags (`y`/`n` review one), and
a question about this photo (`a`).

Tags and the thumbnail load in a thread worker (`PhotoOpened`) on show, so tags written meanwhile
appear; a verdict is written through `ConceptStore.review` in another (`TagReviewed`), and the tags
load again. A question runs `tui.tasks.ask_photo` in a worker; the answer streams in
(`AnswerStreamed`, `AnswerFinished`), or the screen says how to add a model (`ModelMissing`).
"""

from __future__ import annotations

from PIL import Image
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from rrg_local.concepts.store import ConceptStore, Tag
from rrg_local.library.query import PhotoRow
from tui import tasks
from tui.database import opened
from tui.halfblock import halfblock
from tui.messages import AnswerFinished, AnswerStreamed, ModelMissing, PhotoOpened, TagReviewed, post_latest
from tui.views import MODEL_HOWTO, photo_meta, tag_cells

THUMB_COLUMNS = 48
STATUSES = ("suggested", "confirmed", "rejected")


class PhotoScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("y", "review(True)", "Confirm"),
        Binding("n", "review(False)", "Reject"),
        Binding("a", "ask", "Ask about it"),
    ]
    DEFAULT_CSS = """
    PhotoScreen #thumb { width: auto; max-width: 50; padding: 0 1; }
    PhotoScreen #meta { height: auto; padding: 0 1 1 1; }
    PhotoScreen #tags { height: 1fr; }
    PhotoScreen #photo-answer { height: auto; max-height: 12; padding: 0 1; }
    """

    def __init__(self, row: PhotoRow) -> None:
        super().__init__()
        self.row = row
        self.tags: list[Tag] = []
        self.question = ""
        self.answer_text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield Static("", id="thumb")
            with Vertical():
                yield Static(photo_meta(self.row), id="meta")
                yield DataTable(id="tags", cursor_type="row")
                yield Static("", id="photo-answer", markup=False)
                yield Input(placeholder="a: ask about this photo, e.g. What is <Bo> doing here?", id="photo-question")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"Photo {self.row['id']}"
        table = self.query_one("#tags", DataTable)
        table.add_columns("concept", "status", "score", "reasoning")
        table.focus()

    def on_screen_resume(self) -> None:
        self.load()

    def action_back(self) -> None:
        if self.query_one("#photo-question", Input).has_focus:
            self.query_one("#tags", DataTable).focus()
        else:
            self.app.pop_screen()

    def action_ask(self) -> None:
        self.query_one("#photo-question", Input).focus()

    @work(thread=True, exclusive=True, group="photo-load")
    def load(self) -> None:
        settings = self.app.settings
        with opened(settings) as db:
            tags = ConceptStore(db).tags(photo_id=self.row["id"], statuses=STATUSES)
        thumb, error = None, ""
        try:
            with Image.open(settings.thumbs_dir / self.row["thumb"]) as img:
                thumb = halfblock(img, THUMB_COLUMNS)
        except OSError as exc:
            error = f"no thumbnail ({exc.__class__.__name__})"
        post_latest(self, PhotoOpened(self.row["id"], tags, thumb, error))

    def on_photo_opened(self, message: PhotoOpened) -> None:
        self.tags = message.tags
        self.query_one("#thumb", Static).update(message.thumb or message.thumb_error)
        table = self.query_one("#tags", DataTable)
        table.clear()
        for tag in self.tags:
            table.add_row(*tag_cells(tag), key=str(tag.concept_id))
        if not self.tags:
            table.add_row("-", "no tags yet", "", "t on Activity (or rrg tag) suggests them once there is a model")

    def action_review(self, confirm: bool) -> None:
        table = self.query_one("#tags", DataTable)
        if not self.tags or table.cursor_row >= len(self.tags):
            self.notify("no tag to review", severity="warning")
            return
        self.review(self.tags[table.cursor_row], confirm)

    @work(thread=True, group="photo-review")
    def review(self, tag: Tag, confirm: bool) -> None:
        with opened(self.app.settings) as db:
            store = ConceptStore(db)
            store.review(tag.photo_id, store.get(tag.concept_id), confirm)
        self.post_message(TagReviewed(tag.photo_id, tag.concept, confirm))

    def on_tag_reviewed(self, message: TagReviewed) -> None:
        verdict = "confirmed" if message.confirmed else "rejected"
        self.notify(f"<{message.concept}> {verdict} on photo {message.photo_id}")
        self.load()

    # ---- a question about this photo --------------------------------------------------------------

    @on(Input.Submitted, "#photo-question")
    def submitted(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        event.input.clear()
        self.answer_text = ""
        self.question = question
        self.query_one("#photo-answer", Static).update(f"> {question}\n…")
        self.answer(question)

    @work(thread=True, exclusive=True, group="photo-ask")
    def answer(self, question: str) -> None:
        from rrg_local.vlm.registry import RegistryError

        settings = self.app.settings
        try:
            result = tasks.ask_photo(
                settings, question, self.row["id"], lambda p: self.post_message(AnswerStreamed(0, p))
            )
        except RegistryError as exc:
            self.post_message(ModelMissing(str(exc)))
            self.post_message(AnswerFinished(0, MODEL_HOWTO, failed=True))
            return
        except Exception as exc:  # VisionError, ValueError, an unreadable photo
            self.post_message(AnswerFinished(0, f"error: {exc}", failed=True))
            return
        self.post_message(AnswerFinished(0, result.text, result.citations, result.unsure))

    def on_answer_streamed(self, message: AnswerStreamed) -> None:
        self.answer_text += message.piece
        self.query_one("#photo-answer", Static).update(f"> {self.question}\n{self.answer_text}")

    def on_answer_finished(self, message: AnswerFinished) -> None:
        note = "\n(not sure)" if message.unsure and not message.failed else ""
        self.query_one("#photo-answer", Static).update(f"> {self.question}\n{message.text}{note}")

    def on_model_missing(self, message: ModelMissing) -> None:
        self.notify(message.reason, title="no model", severity="warning", timeout=10)
