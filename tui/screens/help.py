"""Help screen: the keys, as a modal over whatever is shown; `escape`, `?` or `q` close it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# rrg tui

| key | does |
| --- | --- |
| `1` `2` `3` `4` `5` | Library, Concepts, Ask, Activity, Settings |
| `/` | filter the library: folder text, date `2024-06`, range `2023..2024-06`, `<Bo>`, `is:suggested` |
| `g` | Library: thumbnail grid / list |
| `space` | Library: mark the photo; `n`: teach a new concept from the marked photos |
| `enter` | open the highlighted photo |
| `r` | Library: rescan the configured folders; Activity: refresh |
| `t` | Activity: embed and tag the photos waiting for it (needs a model) |
| `y` / `n` | Photo: confirm / reject the highlighted tag |
| `e` | Concepts: edit the highlighted concept (name, category, descriptions) |
| `d` | Concepts: delete the highlighted concept (its tags go; photos stay) |
| `a` | Photo: ask a question about this photo ("Is <Bo> in this photo?", "Who is in this photo?") |
| `ctrl+s` | Settings: save |
| `escape` | back (Photo), leave the input (Ask, filter) |
| `ctrl+p` | command palette |
| `?` | this help |
| `q`, `ctrl+c` | quit |

Questions about the library ("Show me photos of <Bo>") need no model. Describing concepts, tagging
and questions about a scene need one: `rrg model add NAME --gguf FILE --mmproj FILE` or `rrg model pull REPO`.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90; height: auto; max-height: 90%; border: round $accent; background: $surface;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP, id="help")
