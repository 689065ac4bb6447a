"""Photo screen: metadata, the thumbnail as half-block text, and the photo's tags; `y`/`n` review one.

Tags and the thumbnail load in a thread worker (`PhotoOpened`); a verdict is written through
`ConceptStore.review` in another (`TagReviewed`), and the tags load again.
"""

from __future__ import annotations

from PIL import Image
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from rrg_local.concepts.store import ConceptStore, Tag
from rrg_local.library.query import PhotoRow
from tui.database import opened
from tui.halfblock import halfblock
from tui.messages import PhotoOpened, TagReviewed
from tui.views import photo_meta, tag_cells

THUMB_COLUMNS = 48
STATUSES = ("suggested", "confirmed", "rejected")


class PhotoScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("y", "review(True)", "Confirm"),
        Binding("n", "review(False)", "Reject"),
    ]
    DEFAULT_CSS = """
    PhotoScreen #thumb { width: auto; max-width: 50; padding: 0 1; }
    PhotoScreen #meta { height: auto; padding: 0 1 1 1; }
    PhotoScreen #tags { height: 1fr; }
    """

    def __init__(self, row: PhotoRow) -> None:
        super().__init__()
        self.row = row
        self.tags: list[Tag] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield Static("", id="thumb")
            with Vertical():
                yield Static(photo_meta(self.row), id="meta")
                yield DataTable(id="tags", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"Photo {self.row['id']}"
        table = self.query_one("#tags", DataTable)
        table.add_columns("concept", "status", "score", "reasoning")
        table.focus()
        self.load()

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
        self.post_message(PhotoOpened(self.row["id"], tags, thumb, error))

    def on_photo_opened(self, message: PhotoOpened) -> None:
        self.tags = message.tags
        self.query_one("#thumb", Static).update(message.thumb or message.thumb_error)
        table = self.query_one("#tags", DataTable)
        table.clear()
        for tag in self.tags:
            table.add_row(*tag_cells(tag), key=str(tag.concept_id))
        if not self.tags:
            table.add_row("-", "no tags yet", "", "rrg tag suggests them once a model is configured")

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
