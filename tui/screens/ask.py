"""Ask screen: type a question, read the answer as it streams in, with the photos it cites.

Each question gets its own answer widget (as in Textual's mother.py). `Asker` runs in a thread
worker; its `on_text` callback posts `AnswerStreamed`, the end posts `AnswerFinished`. Library
questions ("Show me photos of <Bo>") need no model; a scene check or a missing model posts `ModelMissing`.
"""

from __future__ import annotations

import itertools

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from rrg_local.concepts.ask import Asker, route
from rrg_local.concepts.store import ConceptStore
from tui.database import opened
from tui.messages import AnswerFinished, AnswerStreamed, ModelMissing

_ids = itertools.count(1)


def citation_line(citations: list[tuple[int, str | None]]) -> str:
    """The ids of the photos an answer cites.

    >>> citation_line([(3, "/p/a.jpg"), (7, None)])
    'photos: 3, 7'
    """
    return "photos: " + ", ".join(str(pid) for pid, _ in citations) if citations else ""


class Answer(Static):
    DEFAULT_CSS = "Answer { padding: 0 1 1 1; }"

    def __init__(self, answer_id: int, question: str) -> None:
        super().__init__(f"> {question}\n…", id=f"answer-{answer_id}", markup=False)
        self.question = question
        self.text = ""

    def append(self, piece: str) -> None:
        self.text += piece
        self.update(f"> {self.question}\n{self.text}")

    def finish(self, text: str, footer: str) -> None:
        self.text = text
        self.update(f"> {self.question}\n{text}" + (f"\n{footer}" if footer else ""))


class AskScreen(Screen):
    BINDINGS = [Binding("escape", "blur", "Leave input", show=False)]

    def compose(self) -> ComposeResult:
        yield Header()
        yield VerticalScroll(id="answers")
        yield Input(placeholder='Ask: "Show me photos of <Bo>", "When did I last see my blue mug?"', id="question")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Ask"

    def on_screen_resume(self) -> None:
        self.query_one("#question", Input).focus()

    def action_blur(self) -> None:
        self.query_one("#answers").focus()

    @on(Input.Submitted, "#question")
    def submitted(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        event.input.clear()
        answer_id = next(_ids)
        answers = self.query_one("#answers", VerticalScroll)
        answers.mount(Answer(answer_id, question))
        answers.scroll_end(animate=False)
        self.answer(answer_id, question)

    @work(thread=True, group="ask")
    def answer(self, answer_id: int, question: str) -> None:
        from rrg_local.vlm.protocol import VisionError
        from rrg_local.vlm.registry import RegistryError

        settings = self.app.settings
        model = emb = None
        try:
            with opened(settings) as db:
                store = ConceptStore(db)
                if route(question, [c.name for c in store.all()], has_photo=False).scene:
                    from rrg_local.concepts.embeddings import EmbeddingStore, make_embedder
                    from rrg_local.vlm.registry import open_model

                    model = open_model(settings)
                    emb = EmbeddingStore(db, make_embedder(settings, model), settings.thumbs_dir)
                result = Asker(store, model, emb).ask(
                    question, on_text=lambda piece: self.post_message(AnswerStreamed(answer_id, piece))
                )
        except RegistryError as exc:
            self.post_message(ModelMissing(str(exc)))
            self.post_message(AnswerFinished(answer_id, str(exc), failed=True))
            return
        except (VisionError, ValueError) as exc:
            self.post_message(AnswerFinished(answer_id, f"error: {exc}", failed=True))
            return
        finally:
            if model is not None:
                model.close()
        self.post_message(AnswerFinished(answer_id, result.text, result.citations, result.unsure))

    def on_answer_streamed(self, message: AnswerStreamed) -> None:
        self.query_one(f"#answer-{message.answer_id}", Answer).append(message.piece)

    def on_answer_finished(self, message: AnswerFinished) -> None:
        footer = citation_line(message.citations)
        if message.unsure and not message.failed:
            footer += ("\n" if footer else "") + "(not sure: check the photos cited)"
        self.query_one(f"#answer-{message.answer_id}", Answer).finish(message.text, footer)
        self.query_one("#answers", VerticalScroll).scroll_end(animate=False)

    def on_model_missing(self, message: ModelMissing) -> None:
        self.notify(message.reason, title="no model", severity="warning", timeout=10)
