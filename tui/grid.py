"""Thumbnail grid of the Library: one `Cell` per photo, a cursor moved with the arrow keys, in pages.

`ThumbGrid` owns the cells and the cursor; it knows nothing of the database. The screen hands it all the
rows it shows; the grid mounts one page of `PAGE` cells at a time (the cursor walks from one page into the
next, `pageup`/`pagedown` jump a page) and posts `PageShown` so the screen can draw that page's pictures:
half-block `Text` (`thumb_text`, always works, what headless tests see) or, when the terminal can show
real images (`tui.images`), a `textual-image` widget per cell.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer, Vertical
from textual.message import Message
from textual.widgets import Static

from rrg_local.library.query import PhotoRow
from tui.halfblock import halfblock

CELL_COLUMNS = 22  # picture width in text columns
CELL_ROWS = 8  # picture height in text rows (16 pixel rows of half blocks)
MARK = "\u25cf"
PAGE = 120  # cells mounted at once: mounting thousands of widgets would stall the terminal


def thumb_text(path: Path) -> Text:
    """The thumbnail at `path` as half-block text that fits CELL_COLUMNS x CELL_ROWS."""
    with Image.open(path) as img:
        small = img.convert("RGB")
        small.thumbnail((CELL_COLUMNS, CELL_ROWS * 2), Image.Resampling.BILINEAR)
        return halfblock(small)


def caption(row: PhotoRow, marked: bool) -> str:
    """The line under a cell's picture: the mark, the id and the date.

    >>> caption({"id": 3, "taken_at": "2024-06-03T10:00:00"}, True)
    '\u25cf 3  2024-06-03'
    """
    return f"{MARK if marked else ' '} {row['id']}  {row['taken_at'][:10]}"


class Cell(Vertical):
    DEFAULT_CSS = f"""
    Cell {{ width: {CELL_COLUMNS + 2}; height: {CELL_ROWS + 3}; border: round $panel; }}
    Cell.-cursor {{ border: round $accent; }}
    Cell.-marked {{ background: $boost; }}
    Cell > .picture {{ height: {CELL_ROWS}; width: {CELL_COLUMNS}; }}
    Cell > .caption {{ height: 1; }}
    """

    def __init__(
        self, row: PhotoRow, picture: Text | None, marked: bool, image_class: type | None, thumb: Path
    ) -> None:
        super().__init__(id=f"cell-{row['id']}")
        self.row = row
        self.thumb = thumb
        self.picture = picture
        self.marked = marked
        self.image_class = image_class
        self.set_class(marked, "-marked")

    def compose(self) -> ComposeResult:
        if self.image_class is not None:
            yield self.image_class(self.thumb, classes="picture")
        else:
            yield Static(self.picture or "…", classes="picture")
        yield Static(caption(self.row, self.marked), classes="caption")

    def show_picture(self, picture: Text) -> None:
        self.picture = picture
        if self.image_class is None:
            self.query_one(".picture", Static).update(picture)

    def set_marked(self, marked: bool) -> None:
        self.marked = marked
        self.set_class(marked, "-marked")
        self.query_one(".caption", Static).update(caption(self.row, marked))


class ThumbGrid(ScrollableContainer, can_focus=True):
    """Cells in rows as wide as the widget allows; `enter` posts `Opened`, a new page posts `PageShown`."""

    DEFAULT_CSS = "ThumbGrid { layout: grid; grid-size: 4; grid-gutter: 0 1; height: 1fr; }"
    BINDINGS = [
        Binding("left", "move(-1)", "Left", show=False),
        Binding("right", "move(1)", "Right", show=False),
        Binding("up", "move_rows(-1)", "Up", show=False),
        Binding("down", "move_rows(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("enter", "open", "Open", show=False),
    ]

    class Opened(Message):
        def __init__(self, photo_id: int) -> None:
            super().__init__()
            self.photo_id = photo_id

    class PageShown(Message):
        def __init__(self, rows: list[PhotoRow]) -> None:
            super().__init__()
            self.rows = rows  # the page's rows; `ThumbGrid.page` and `.pages` say which page of how many

    def __init__(self, thumbs_dir: Path, *, id: str | None = None, image_class: type | None = None) -> None:
        super().__init__(id=id)
        self.thumbs_dir = thumbs_dir
        self.image_class = image_class
        self.rows: list[PhotoRow] = []
        self.pictures: dict[int, Text] = {}
        self.marked: set[int] = set()
        self.cursor = 0  # index into all rows, not only the mounted page
        self.page: int | None = None  # the mounted page

    @property
    def columns(self) -> int:
        return max(1, (self.size.width or 80) // (CELL_COLUMNS + 3))

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.rows) // PAGE))

    def on_resize(self) -> None:
        self.styles.grid_size_columns = self.columns

    async def fill(self, rows: list[PhotoRow], pictures: dict[int, Text], marked: set[int]) -> None:
        """Show `rows`, keeping the cursor on the same photo if it is still there."""
        keep = self.current_id()
        self.rows, self.pictures, self.marked = rows, pictures, marked
        ids = [r["id"] for r in rows]
        self.cursor = ids.index(keep) if keep in ids else 0
        self.page = None
        await self._show_page()

    async def _show_page(self) -> None:
        page = self.cursor // PAGE
        if page != self.page:
            self.page = page
            rows = self.rows[page * PAGE : (page + 1) * PAGE]
            await self.remove_children()
            await self.mount_all(
                Cell(
                    r,
                    self.pictures.get(r["id"]),
                    r["id"] in self.marked,
                    self.image_class,
                    self.thumbs_dir / r["thumb"],
                )
                for r in rows
            )
            self.post_message(self.PageShown(rows))
        self.call_after_refresh(self._show_cursor)

    def current_id(self) -> int | None:
        return self.rows[self.cursor]["id"] if 0 <= self.cursor < len(self.rows) else None

    def cells(self) -> list[Cell]:
        return list(self.query(Cell))

    def show_pictures(self, pictures: dict[int, Text]) -> None:
        for cell in self.cells():
            if cell.row["id"] in pictures:
                cell.show_picture(pictures[cell.row["id"]])

    def set_marked(self, photo_id: int, marked: bool) -> None:
        for cell in self.query(f"#cell-{photo_id}").results(Cell):
            cell.set_marked(marked)

    async def action_move(self, step: int) -> None:
        if self.rows:
            self.cursor = min(len(self.rows) - 1, max(0, self.cursor + step))
            await self._show_page()

    async def action_move_rows(self, step: int) -> None:
        await self.action_move(step * self.columns)

    async def action_page(self, step: int) -> None:
        """The same place on the next (previous) page; the last photo from the last page."""
        await self.action_move(step * PAGE)

    def action_open(self) -> None:
        if (pid := self.current_id()) is not None:
            self.post_message(self.Opened(pid))

    def _show_cursor(self) -> None:
        first = (self.page or 0) * PAGE
        for i, cell in enumerate(self.cells()):
            cell.set_class(first + i == self.cursor, "-cursor")
            if first + i == self.cursor:
                self.scroll_to_widget(cell, animate=False)
