"""Every custom Textual message of the TUI, in one place: past-tense dataclasses.

Thread workers (`@work(thread=True)`) never touch widgets; they post one of these and the screen's
`on_<name>` handler updates what is shown. Payloads are plain values (rows, frozen dataclasses, Rich
`Text`), never database handles, so a message can cross threads safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.message import Message
from textual.message_pump import MessagePump
from textual.worker import get_current_worker

from rrg_local.concepts.store import Concept, Tag
from rrg_local.library.query import ErrorRow, PhotoRow
from tui.views import ConceptView, PhotoTags


def post_latest(target: MessagePump, message: Message) -> None:
    """Post from an exclusive thread worker unless a newer run replaced it: a thread cannot be stopped, so a
    superseded load would otherwise land after the newer one and put stale rows back on screen (a concept
    deleted while the screen reloaded stayed listed)."""
    if not get_current_worker().is_cancelled:
        target.post_message(message)


@dataclass
class LibraryLoaded(Message):
    rows: list[PhotoRow]
    tags: dict[int, PhotoTags] = field(default_factory=dict)


@dataclass
class ThumbsRendered(Message):
    pictures: dict[int, Text]


@dataclass
class LibraryChanged(Message, bubble=False):
    """The watcher indexed something (`what`: scan, change, move, rescan). The app hands it to the screens.

    `bubble=False` goes in the class statement: Textual sets `bubble` from it when the class is made, over any
    `bubble = False` in the body. Bubbling, a screen's copy came back to the app, which handed it to the
    screens again: an endless reload loop whenever the watcher reported."""

    what: str
    counts: dict[str, int]
    errors: list[str] = field(default_factory=list)


@dataclass
class ConceptTaught(Message):
    name: str
    photos: int
    has_model: bool
    error: str = ""


@dataclass
class ConceptDescribed(Message):
    name: str
    description: str
    error: str = ""


@dataclass
class TagProgressed(Message):
    phase: str  # "embedding" or "tagging"
    done: int
    total: int
    eta_s: float | None


@dataclass
class TagFinished(Message):
    summary: str
    failed: bool = False


@dataclass
class SettingsSaved(Message):
    path: str


@dataclass
class ScanProgressed(Message):
    seen: int
    new_photos: int
    errors: int


@dataclass
class ScanFinished(Message):
    counts: dict[str, int]
    seconds: float
    unavailable: tuple[str, ...] = ()
    note: str = ""


@dataclass
class PhotoOpened(Message):
    photo_id: int
    tags: list[Tag]
    thumb: Text | None
    thumb_error: str = ""


@dataclass
class TagReviewed(Message):
    photo_id: int
    concept: str
    confirmed: bool


@dataclass
class ConceptsLoaded(Message):
    concepts: list[ConceptView]
    has_model: bool


@dataclass
class AnswerStreamed(Message):
    answer_id: int
    piece: str


@dataclass
class AnswerFinished(Message):
    answer_id: int
    text: str
    citations: list[tuple[int, str | None]] = field(default_factory=list)
    unsure: bool = False
    failed: bool = False


@dataclass
class ModelMissing(Message):
    reason: str


@dataclass
class ActivityLoaded(Message):
    counts: dict
    errors: list[ErrorRow]
    model: str = ""


@dataclass
class ConceptFetched(Message):
    """The highlighted concept, read again for the edit modal (None: it is gone)."""

    concept_id: int
    concept: Concept | None


@dataclass
class ConceptEdited(Message):
    concept_id: int
    name: str
    error: str = ""


@dataclass
class ConceptRemoved(Message):
    name: str
    error: str = ""
