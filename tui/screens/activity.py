"""Activity screen: the index's counts (`query.status`) and the files that could not be indexed.

Loads in a thread worker each time it is shown (`ActivityLoaded`); `r` loads again.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from rrg_local.library.query import list_errors, status
from tui.database import opened
from tui.messages import ActivityLoaded


def status_text(counts: dict) -> str:
    """One line per count, as `rrg status` says them.

    >>> status_text({"photos": 3, "missing": 0, "paths": 3, "errors": 1, "pending_jobs": 6, "last_scan": None})
    'photos: 3   missing: 0   paths: 3   bad files: 1   pending jobs: 6   last scan: never'
    """
    return (
        f"photos: {counts['photos']}   missing: {counts['missing']}   paths: {counts['paths']}   "
        f"bad files: {counts['errors']}   pending jobs: {counts['pending_jobs']}   "
        f"last scan: {counts['last_scan'] or 'never'}"
    )


class ActivityScreen(Screen):
    BINDINGS = [Binding("r", "refresh", "Refresh")]
    DEFAULT_CSS = "ActivityScreen #counts { height: auto; padding: 0 1 1 1; }"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading...", id="counts")
        yield DataTable(id="errors", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Activity"
        self.query_one(DataTable).add_columns("path", "kind", "reason", "at")

    def on_screen_resume(self) -> None:
        self.query_one(DataTable).focus()
        self.load()

    def action_refresh(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="activity-load")
    def load(self) -> None:
        with opened(self.app.settings) as db:
            counts, errors = status(db), list_errors(db)
        self.post_message(ActivityLoaded(counts, errors))

    def on_activity_loaded(self, message: ActivityLoaded) -> None:
        self.query_one("#counts", Static).update(status_text(message.counts))
        table = self.query_one(DataTable)
        table.clear()
        for e in message.errors:
            table.add_row(e["path"], e["kind"], e["reason"], e["at"])
