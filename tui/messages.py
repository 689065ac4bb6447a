"""Every custom Textual message of the TUI, in one place: past-tense dataclasses.

Thread workers (`@work(thread=True)`) never touch widgets; they post one of these and the screen's
`on_<name>` handler updates what is shown. Payloads are plain values (rows, frozen dataclasses, Rich
`Text`), never database handles, so a message can cross threads safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.message import Message

from rrg_local.concepts.store import Tag
from rrg_local.library.query import ErrorRow, PhotoRow
from tui.views import ConceptView


@dataclass
class LibraryLoaded(Message):
    rows: list[PhotoRow]


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
