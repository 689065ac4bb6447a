"""Activity screen: the model in use, the index's counts (`query.status`), tagging, bad files, and the
recent notifications (`RRGApp.notes`: a toast that vanished can be read here).

Loads in a thread worker each time it is shown and whenever the watcher reports (`ActivityLoaded`);
`r` loads again. `t` embeds and tags what is waiting (`tui.tasks.tag_library`) in a worker whose
`TagProgressed` messages drive the progress bar (counts and ETA); `TagFinished` ends it.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from rrg_local.library.query import list_errors, status
from tui import tasks
from tui.database import opened
from tui.messages import ActivityLoaded, LibraryChanged, TagFinished, TagProgressed, post_latest


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


def progress_text(phase: str, done: int, total: int, eta_s: float | None) -> str:
    """What the progress bar stands for, in words.

    >>> progress_text("tagging", 3, 10, 70.2)
    'tagging: 3 / 10 photos, about 1m 10s left'
    """
    left = "" if eta_s is None else f", about {int(eta_s) // 60}m {int(eta_s) % 60}s left"
    return f"{phase}: {done} / {total} photos{left}"


class ActivityScreen(Screen):
    BINDINGS = [Binding("r", "refresh", "Refresh"), Binding("t", "tag", "Tag now")]
    DEFAULT_CSS = """
    ActivityScreen #model { height: auto; padding: 0 1; }
    ActivityScreen #counts { height: auto; padding: 1 1 0 1; }
    ActivityScreen #tag-progress { padding: 0 1; }
    ActivityScreen #tag-status { height: auto; padding: 0 1 1 1; }
    ActivityScreen #errors { height: 1fr; }
    ActivityScreen #notes-title { padding: 1 1 0 1; }
    ActivityScreen #notes { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.tagging = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="model")
        yield Static("loading...", id="counts")
        yield ProgressBar(id="tag-progress", show_eta=False)
        yield Static("t: tag the photos waiting for it", id="tag-status")
        yield DataTable(id="errors", cursor_type="row")
        yield Static("recent messages", id="notes-title")
        yield DataTable(id="notes", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Activity"
        self.query_one("#errors", DataTable).add_columns("path", "kind", "reason", "at")
        self.query_one("#notes", DataTable).add_columns("at", "kind", "message")

    def on_screen_resume(self) -> None:
        self.query_one("#errors", DataTable).focus()
        self.load()
        self.show_notes()

    def show_notes(self) -> None:
        """The app's kept notifications, newest first, one line each."""
        table = self.query_one("#notes", DataTable)
        table.clear()
        for n in reversed(getattr(self.app, "notes", ())):
            text = (f"{n.title}: {n.message}" if n.title else n.message).replace("\n", " ")
            table.add_row(n.at, n.severity, text[:200])

    def on_library_changed(self, message: LibraryChanged) -> None:
        self.load()

    def action_refresh(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="activity-load")
    def load(self) -> None:
        settings = self.app.settings
        with opened(settings) as db:
            counts, errors = status(db), list_errors(db)
        post_latest(self, ActivityLoaded(counts, errors, tasks.model_status(settings)))

    def on_activity_loaded(self, message: ActivityLoaded) -> None:
        self.query_one("#model", Static).update(message.model)
        self.query_one("#counts", Static).update(status_text(message.counts))
        table = self.query_one("#errors", DataTable)
        table.clear()
        for e in message.errors:
            table.add_row(e["path"], e["kind"], e["reason"], e["at"])

    # ---- tagging ----------------------------------------------------------------------------------

    def action_tag(self) -> None:
        if self.tagging:
            self.notify("already tagging", severity="warning")
            return
        self.tagging = True
        self.query_one("#tag-status", Static).update("starting the model...")
        self.tag()

    @work(thread=True, exclusive=True, group="tag")
    def tag(self) -> None:
        def progressed(phase: str, done: int, total: int, eta_s: float | None) -> None:
            self.post_message(TagProgressed(phase, done, total, eta_s))

        try:
            summary = tasks.tag_library(self.app.settings, progressed)
        except Exception as exc:  # RegistryError (no model), VisionError, a database error
            self.post_message(TagFinished(str(exc), failed=True))
            return
        self.post_message(TagFinished(summary))

    def on_tag_progressed(self, message: TagProgressed) -> None:
        self.query_one(ProgressBar).update(total=max(message.total, 1), progress=message.done)
        self.query_one("#tag-status", Static).update(
            progress_text(message.phase, message.done, message.total, message.eta_s)
        )

    def on_tag_finished(self, message: TagFinished) -> None:
        self.tagging = False
        self.query_one("#tag-status", Static).update(message.summary)
        self.notify(message.summary, title="tagging", severity="error" if message.failed else "information")
        self.app.library_changes += 1  # the Library's tag filters load again on show
        self.load()
        self.show_notes()
