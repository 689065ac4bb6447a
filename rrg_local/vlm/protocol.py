"""The seam between the product and a vision-language model, and the values that cross it.

A request is a chat (`Message`s whose parts are text or `ImageRef`s) plus a *script* of steps that the
model runs after the generation prompt: `Force` appends fixed text, `Generate` samples (optionally under
a GBNF grammar), `Choose` reads the next-token distribution over a few options, records their
probabilities and appends the most likely one, `Score` appends fixed text and records how likely the model
found it (the caption likelihood a listener can judge a description by). Scripts are how structured answers
are guaranteed to be well-formed JSON and how P(Yes) is read from exactly the answer token's logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image


class VisionError(Exception):
    """A model or an image that cannot be used; the message names the file or the failing step."""


@dataclass(frozen=True)
class ImageRef:
    """A photo given to the model: a file path, encoded bytes, or an already decoded image."""

    source: Path | str | bytes | Image.Image
    orientation: int | None = None  # EXIF orientation to apply; None: read it from the file


@dataclass(frozen=True)
class Message:
    role: str  # system, user, assistant
    parts: tuple[str | ImageRef, ...]

    @staticmethod
    def of(role: str, *parts: str | ImageRef) -> Message:
        return Message(role, tuple(parts))

    @property
    def images(self) -> list[ImageRef]:
        return [p for p in self.parts if isinstance(p, ImageRef)]


@dataclass(frozen=True)
class Force:
    text: str
    tokens: tuple[int, ...] | None = None  # exact token ids to append instead of tokenizing `text` (replays)


@dataclass(frozen=True)
class Generate:
    max_tokens: int = 256
    grammar: str | None = None  # GBNF with a `root` rule
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    close: str = ""  # appended if max_tokens runs out, to leave the grammar's output well-formed


@dataclass(frozen=True)
class Choose:
    options: tuple[str, ...]


@dataclass(frozen=True)
class Score:
    """Append `text` and record its log-probability: each token's, given everything before it, summed."""

    text: str


Step = Force | Generate | Choose | Score


@dataclass(frozen=True)
class Choice:
    picked: str
    probs: dict[str, float]  # renormalised over the options
    mass: float  # probability the model put on the options' first tokens before renormalising


@dataclass(frozen=True)
class Scored:
    text: str
    logprob: float  # natural log, summed over the text's tokens
    n_tokens: int


@dataclass
class ScriptResult:
    outputs: list[str | Choice | Scored] = field(default_factory=list)  # one per step (Force: its text)
    text: str = ""  # everything after the generation prompt
    n_generated: int = 0
    truncated: bool = False  # a Generate step hit max_tokens
    step_tokens: list[tuple[int, ...]] = field(default_factory=list)  # the token ids each step appended

    @property
    def choices(self) -> list[Choice]:
        return [o for o in self.outputs if isinstance(o, Choice)]

    @property
    def scores(self) -> list[Scored]:
        return [o for o in self.outputs if isinstance(o, Scored)]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    n_ctx: int
    n_embd: int
    image_max_tokens: int | None


OnText = Callable[[str], None]


@runtime_checkable
class VisionModel(Protocol):
    info: ModelInfo

    def run(
        self,
        messages: Sequence[Message],
        steps: Sequence[Step],
        *,
        seed: int = 0,
        on_text: OnText | None = None,
        role: str = "listener",
    ) -> ScriptResult:
        """Run `steps` after the chat's generation prompt; `on_text` streams generated text. `role` is
        "speaker" when describing a concept (a model may apply a speaker-only adapter), else "listener"."""
        ...

    def embed_image(self, image: ImageRef):
        """The vision encoder's output for a photo, max-pooled over its tokens, L2-normalised (numpy float32)."""
        ...

    def close(self) -> None: ...
