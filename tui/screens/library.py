"""Library screen: every photo in a table or a thumbnail grid (`g`), a filter, `enter` to open one,
`space` to mark photos, `n` to teach a concept from the marked ones, `r` to rescan the folders.

Loading, thumbnails, scanning and teaching run in thread workers that post `LibraryLoaded`,
`ThumbsRendered`, `ScanProgressed`, `ScanFinished`, `ConceptTaught` and `ConceptDescribed`; the
filter works on the loaded rows in memory (`tui.views.filter_rows`), in both views. The app's watcher
posts `LibraryChanged`, and the screen loads again.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from rrg_local.concepts.store import ConceptStore
from rrg_local.library.query import PhotoRow, list_photos
from rrg_local.library.scan import Scanner, ScanReport
from rrg_local.wording import count
from tui import tasks
from tui.database import opened
from tui.grid import MARK, ThumbGrid, thumb_text
from tui.messages import (
    ConceptDescribed,
    ConceptTaught,
    LibraryChanged,
    LibraryLoaded,
    ScanFinished,
    ScanProgressed,
    ThumbsRendered,
    post_latest,
)
from tui.views import FILTER_HELP, MODEL_HOWTO, PhotoTags, filter_rows, photo_cells

COLUMNS = ("id", "date", "size", "camera", "path")
MAX_COLUMN = 120  # a path wider than this is cut (the Photo screen shows it whole)


class LibraryScreen(Screen):
    DEFAULT_CSS = """
    LibraryScreen #photos { height: 1fr; }
    LibraryScreen #library-status { padding: 0 1; }
    LibraryScreen #grid { display: none; }
    LibraryScreen.-grid #grid { display: block; }
    LibraryScreen.-grid #photos { display: none; }
    """
    BINDINGS = [
        Binding("r", "rescan", "Rescan"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("g", "toggle_view", "Grid/list"),
        Binding("space", "mark", "Mark"),
        Binding("n", "teach", "New concept"),
        Binding("escape", "focus_table", "Table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[PhotoRow] = []
        self.tags: dict[int, PhotoTags] = {}
        self.shown: list[PhotoRow] = []
        self.marked: set[int] = set()
        self.pictures: dict[int, Text] = {}
        self.grid_view = False
        self.seen_changes = 0
        self.note = ""  # the last thing teaching said; stays under the counts until the next one

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder=FILTER_HELP, id="filter")
        yield DataTable(id="photos", cursor_type="row", zebra_stripes=True)
        image_class = getattr(self.app, "image_class", None)
        yield ThumbGrid(self.app.settings.thumbs_dir, id="grid", image_class=image_class)
        yield Static("loading...", id="library-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Library"
        self.query_one(DataTable).focus()
        self.load()

    @work(thread=True, exclusive=True, group="library-load")
    def load(self) -> None:
        self.seen_changes = self.app.library_changes
        with opened(self.app.settings) as db:
            rows = list_photos(db)
            tags: dict[int, list[tuple[str, str]]] = {}
            for t in ConceptStore(db).tags(statuses=("suggested", "confirmed", "rejected")):
                tags.setdefault(t.photo_id, []).append((t.concept, t.status))
        post_latest(self, LibraryLoaded(rows, {k: tuple(v) for k, v in tags.items()}))

    async def on_library_loaded(self, message: LibraryLoaded) -> None:
        self.rows, self.tags = message.rows, message.tags
        known = {r["id"] for r in self.rows}
        self.marked &= known
        await self.refill()

    def on_library_changed(self, message: LibraryChanged) -> None:
        self.load()

    def on_screen_resume(self) -> None:
        if self.seen_changes != self.app.library_changes:
            self.load()

    async def refill(self) -> None:
        table = self.query_one(DataTable)
        self.shown = filter_rows(self.rows, self.query_one("#filter", Input).value, self.tags)
        cells = [photo_cells(row) for row in self.shown]
        # Explicit widths: auto-sized columns only widen when the app goes idle, which a busy machine delays
        # (seen: a real terminal showing every column cut to its header's width).
        table.clear(columns=True)
        table.add_column(" ", key="mark", width=1)
        for i, name in enumerate(COLUMNS):
            widest = max([len(name), *(len(str(c[i])) for c in cells)])
            table.add_column(name, key=name, width=min(widest, MAX_COLUMN))
        for row, row_cells in zip(self.shown, cells, strict=True):
            table.add_row(MARK if row["id"] in self.marked else "", *row_cells, key=str(row["id"]))
        if self.grid_view:
            await self.query_one(ThumbGrid).fill(self.shown, self.pictures, self.marked)
        self.show_status()

    def show_status(self) -> None:
        """The counts, marks and grid page, then the last teaching note."""
        status = f"{len(self.shown)} of {len(self.rows)} photos"
        if self.marked:
            status += f", {len(self.marked)} marked (n: teach a concept from them)"
        grid = self.query_one(ThumbGrid)
        if self.grid_view and grid.pages > 1:
            status += f"; grid page {(grid.page or 0) + 1} of {grid.pages} (pageup/pagedown)"
        self.query_one("#library-status", Static).update(status + (f"\n{self.note}" if self.note else ""))

    @on(ThumbGrid.PageShown)
    def page_shown(self, event: ThumbGrid.PageShown) -> None:
        missing = [r for r in event.rows if r["id"] not in self.pictures]
        if missing and getattr(self.app, "image_class", None) is None:
            self.render_thumbs(missing)
        self.show_status()

    @work(thread=True, group="library-thumbs")
    def render_thumbs(self, rows: list[PhotoRow]) -> None:
        pictures = {}
        for row in rows:
            try:
                pictures[row["id"]] = thumb_text(self.app.settings.thumbs_dir / row["thumb"])
            except OSError:
                pictures[row["id"]] = Text("(no thumbnail)")
        self.post_message(ThumbsRendered(pictures))

    def on_thumbs_rendered(self, message: ThumbsRendered) -> None:
        self.pictures.update(message.pictures)
        self.query_one(ThumbGrid).show_pictures(message.pictures)

    async def action_toggle_view(self) -> None:
        self.grid_view = not self.grid_view
        self.set_class(self.grid_view, "-grid")
        await self.refill()
        (self.query_one(ThumbGrid) if self.grid_view else self.query_one(DataTable)).focus()

    @on(Input.Changed, "#filter")
    async def filter_changed(self) -> None:
        await self.refill()

    @on(Input.Submitted, "#filter")
    def action_focus_table(self) -> None:
        (self.query_one(ThumbGrid) if self.grid_view else self.query_one(DataTable)).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def current_id(self) -> int | None:
        if self.grid_view:
            return self.query_one(ThumbGrid).current_id()
        table = self.query_one(DataTable)
        if not self.shown or table.cursor_row >= len(self.shown):
            return None
        return self.shown[table.cursor_row]["id"]

    def action_mark(self) -> None:
        pid = self.current_id()
        if pid is None:
            return
        marked = pid not in self.marked
        (self.marked.add if marked else self.marked.discard)(pid)
        table = self.query_one(DataTable)
        if str(pid) in table.rows:
            table.update_cell(str(pid), "mark", MARK if marked else "")
        self.query_one(ThumbGrid).set_marked(pid, marked)
        self.show_status()

    @on(DataTable.RowSelected, "#photos")
    def open_photo(self, event: DataTable.RowSelected) -> None:
        self.open(int(event.row_key.value))

    @on(ThumbGrid.Opened)
    def open_cell(self, event: ThumbGrid.Opened) -> None:
        self.open(event.photo_id)

    def open(self, photo_id: int) -> None:
        from tui.screens.photo import PhotoScreen

        row = next(r for r in self.rows if r["id"] == photo_id)
        self.app.push_screen(PhotoScreen(row))

    # ---- teach a concept from the marked photos ---------------------------------------------------

    def action_teach(self) -> None:
        from tui.screens.teach import TeachScreen

        ids = sorted(self.marked) or ([pid] if (pid := self.current_id()) is not None else [])
        if not ids:
            self.notify("mark photos with space first", severity="warning")
            return

        def taught(answer: tuple[str, str] | None) -> None:
            if answer:
                self.teach(answer[0], answer[1], ids)

        self.app.push_screen(TeachScreen(len(ids)), taught)

    @work(thread=True, group="library-teach")
    def teach(self, name: str, category: str, photo_ids: list[int]) -> None:
        settings = self.app.settings
        try:
            concept_id = tasks.teach(settings, name, category, photo_ids)
        except Exception as exc:  # ConceptError (duplicate name, too many photos) or a database error
            self.post_message(ConceptTaught(name, len(photo_ids), False, error=str(exc)))
            return
        model = tasks.has_model(settings)
        self.post_message(ConceptTaught(name, len(photo_ids), model))
        if not model:
            return
        try:
            description = tasks.describe(settings, concept_id)
        except Exception as exc:  # RegistryError, VisionError: the concept stays, without a description
            self.post_message(ConceptDescribed(name, "", error=str(exc)))
            return
        self.post_message(ConceptDescribed(name, description))

    def on_concept_taught(self, message: ConceptTaught) -> None:
        if message.error:
            self.notify(f"<{message.name}> not created: {message.error}", severity="error", timeout=10)
            return
        self.marked.clear()
        self.load()
        text = f"<{message.name}> created from {count(message.photos, 'photo')}; the library is queued for tagging."
        if message.has_model:
            self.notify(text + " Writing its description...", title="new concept", timeout=10)
        else:
            self.notify(text + "\n" + MODEL_HOWTO, title="new concept", severity="warning", timeout=20)
        self.note = text

    def on_concept_described(self, message: ConceptDescribed) -> None:
        if message.error:
            self.notify(f"<{message.name}>: no description ({message.error})", severity="error", timeout=15)
            return
        self.notify(f"<{message.name}>: {message.description}", title="description written", timeout=20)
        self.note = f"<{message.name}> described: {message.description}"
        self.load()

    # ---- rescan ---------------------------------------------------------------------------------

    def action_rescan(self) -> None:
        self.query_one("#library-status", Static).update("scanning...")
        self.rescan()

    @work(thread=True, exclusive=True, group="library-scan")
    def rescan(self) -> None:
        settings = self.app.settings
        if not settings.folders:
            note = "no library folders configured: add one with `rrg folders add PATH`"
            self.post_message(ScanFinished({}, 0.0, note=note))
            return

        def progressed(report: ScanReport) -> None:
            self.post_message(ScanProgressed(report.seen, report.new_photos, len(report.errors)))

        with opened(settings) as db:
            report = Scanner(db, settings, on_progress=progressed).scan(settings.folders)
        self.post_message(ScanFinished(report.counts(), report.seconds, tuple(report.unavailable)))

    def on_scan_progressed(self, message: ScanProgressed) -> None:
        self.query_one("#library-status", Static).update(
            f"scanning: {count(message.seen, 'file')}, {message.new_photos} new, {count(message.errors, 'error')}"
        )

    def on_scan_finished(self, message: ScanFinished) -> None:
        if message.note:
            self.query_one("#library-status", Static).update(message.note)
            self.notify(message.note, severity="warning")
            return
        c = message.counts
        summary = (
            f"scanned {count(c['seen'], 'file')} in {message.seconds:.1f}s: {c['new_photos']} new, "
            f"{c['missing']} missing, {count(c['errors'], 'error')}"
        )
        self.notify(summary, severity="error" if c["errors"] or message.unavailable else "information")
        for root in message.unavailable:
            self.notify(f"not scanned: {root}", severity="warning")
        self.load()
