"""Library screen: every photo in a table, a filter, `enter` to open one, `r` to rescan the folders.

Loading and scanning run in thread workers that post `LibraryLoaded`, `ScanProgressed` and
`ScanFinished`; the filter works on the loaded rows in memory (`tui.views.filter_rows`).
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from rrg_local.library.query import PhotoRow, list_photos
from rrg_local.library.scan import Scanner, ScanReport
from tui.database import opened
from tui.messages import LibraryLoaded, ScanFinished, ScanProgressed
from tui.views import filter_rows, photo_cells

COLUMNS = ("id", "date", "size", "camera", "path")


class LibraryScreen(Screen):
    DEFAULT_CSS = "LibraryScreen #photos { height: 1fr; } LibraryScreen #library-status { padding: 0 1; }"
    BINDINGS = [
        Binding("r", "rescan", "Rescan"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "focus_table", "Table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[PhotoRow] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ filter: folder text or date prefix (2024-06)", id="filter")
        yield DataTable(id="photos", cursor_type="row", zebra_stripes=True)
        yield Static("loading...", id="library-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Library"
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.query_one(DataTable).focus()
        self.load()

    @work(thread=True, exclusive=True, group="library-load")
    def load(self) -> None:
        with opened(self.app.settings) as db:
            rows = list_photos(db)
        self.post_message(LibraryLoaded(rows))

    def on_library_loaded(self, message: LibraryLoaded) -> None:
        self.rows = message.rows
        self.refill()

    def refill(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        shown = filter_rows(self.rows, self.query_one("#filter", Input).value)
        for row in shown:
            table.add_row(*photo_cells(row), key=str(row["id"]))
        self.query_one("#library-status", Static).update(f"{len(shown)} of {len(self.rows)} photos")

    @on(Input.Changed, "#filter")
    def filter_changed(self) -> None:
        self.refill()

    @on(Input.Submitted, "#filter")
    def action_focus_table(self) -> None:
        self.query_one(DataTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    @on(DataTable.RowSelected, "#photos")
    def open_photo(self, event: DataTable.RowSelected) -> None:
        from tui.screens.photo import PhotoScreen

        row = next(r for r in self.rows if str(r["id"]) == event.row_key.value)
        self.app.push_screen(PhotoScreen(row))

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
            f"scanning: {message.seen} files, {message.new_photos} new, {message.errors} errors"
        )

    def on_scan_finished(self, message: ScanFinished) -> None:
        if message.note:
            self.query_one("#library-status", Static).update(message.note)
            self.notify(message.note, severity="warning")
            return
        c = message.counts
        summary = (
            f"scanned {c['seen']} files in {message.seconds:.1f}s: {c['new_photos']} new, "
            f"{c['missing']} missing, {c['errors']} errors"
        )
        self.notify(summary, severity="error" if c["errors"] or message.unavailable else "information")
        for root in message.unavailable:
            self.notify(f"not scanned: {root}", severity="warning")
        self.load()
