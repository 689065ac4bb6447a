"""The long jobs the TUI runs in thread workers, as plain functions: teach, describe, tag, model status.

No Textual here: each takes the `Settings`, opens its own database connection (`tui.database.opened`)
and reports through callbacks, so screens wrap them in `@work(thread=True)` and post messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rrg_local.concepts.store import ConceptStore
from rrg_local.config import Settings
from rrg_local.vlm import registry
from rrg_local.wording import count
from tui.database import opened

OnTagProgress = Callable[[str, int, int, float | None], None]  # phase, done, total, eta seconds


def has_model(settings: Settings) -> bool:
    models, _ = registry.entries(settings)
    return bool(models)


def model_status(settings: Settings) -> str:
    """The model in use and its files, or how to add one.

    Without a registry the howto is returned (see `tui.views.MODEL_HOWTO`).
    """
    from tui.views import MODEL_HOWTO

    models, default = registry.entries(settings)
    if not models:
        return MODEL_HOWTO
    entry = next((m for m in models if m.name == default), models[0])
    lines = [f"model: {entry.name}   ({len(models)} registered; switch in Settings or with `rrg model use`)"]
    lines.append(f"  gguf:   {entry.gguf}" + ("" if entry.gguf.exists() else "  (missing!)"))
    lines.append(f"  mmproj: {entry.mmproj}" + ("" if entry.mmproj.exists() else "  (missing!)"))
    if entry.lora:
        lines.append(f"  lora:   {entry.lora}")
    return "\n".join(lines)


def teach(settings: Settings, name: str, category: str, photo_ids: Sequence[int]) -> int:
    """A new concept with these reference photos; the library is queued for tagging. Returns its id."""
    with opened(settings) as db:
        store = ConceptStore(db)
        concept = store.add(name, category)
        try:
            concept = store.add_photos(concept, photo_ids, "reference")
        except Exception:
            store.remove(concept)
            raise
        db.conn.commit()
        return concept.id


def describe(settings: Settings, concept_id: int) -> str:
    """Write the concept's description with the configured model (the reference game); the chosen text."""
    from rrg_local.concepts.describe import write_description
    from rrg_local.concepts.embeddings import EmbeddingStore, make_embedder

    model = registry.open_model(settings)
    try:
        with opened(settings) as db:
            store = ConceptStore(db)
            emb = EmbeddingStore(db, make_embedder(settings, model), settings.thumbs_dir)
            concept = write_description(model, store, emb, store.get(concept_id))
            db.conn.commit()
            return concept.detailed or concept.coarse
    finally:
        model.close()


def eta(started: float, done: int, total: int, now: float | None = None) -> float | None:
    """Seconds left at the rate so far; None before the first item.

    >>> eta(0.0, 2, 10, now=4.0)
    16.0
    """
    if done <= 0:
        return None
    now = time.monotonic() if now is None else now
    return (now - started) / done * max(0, total - done)


def tag_library(settings: Settings, on_progress: OnTagProgress) -> str:
    """Embed what is pending, then tag every pending photo; a one-line summary."""
    from rrg_local.concepts.embeddings import EmbeddingStore, make_embedder
    from rrg_local.concepts.tagging import Tagger, tag_config
    from rrg_local.jobs import KIND_EMBED, KIND_TAG

    model = registry.open_model(settings)
    try:
        with opened(settings) as db:
            emb = EmbeddingStore(db, make_embedder(settings, model), settings.thumbs_dir)
            pending = _pending(db, KIND_EMBED)
            started = time.monotonic()
            on_progress("embedding", 0, pending, None)
            emb.run_jobs(on_progress=lambda n: on_progress("embedding", n, pending, eta(started, n, pending)))
            total = _pending(db, KIND_TAG)
            started = time.monotonic()
            on_progress("tagging", 0, total, None)

            def tagged(report, remaining: int) -> None:
                on_progress("tagging", report.photos, remaining, eta(started, report.photos, remaining))

            report = Tagger(db, model, emb, tag_config(settings)).run(on_progress=tagged)
    finally:
        model.close()
    summary = f"tagged {count(report.photos, 'photo')}: {count(report.suggestions, 'suggestion')}"
    return summary + (f", {report.failed} failed" if report.failed else "")


def _pending(db, kind: str) -> int:
    sql = "SELECT count(*) FROM jobs WHERE kind = ? AND state IN ('pending', 'running')"
    return db.execute(sql, [kind]).fetchone()[0]


def ask_photo(settings: Settings, question: str, photo_id: int, on_text: Callable[[str], None]):
    """Answer a question about one library photo with the configured model, streaming pieces to `on_text`: the
    photo's file where it is now (opened by its raw bytes), else its thumbnail."""
    from rrg_local.concepts.ask import Asker
    from rrg_local.concepts.embeddings import EmbeddingStore, make_embedder
    from rrg_local.concepts.tagging import tag_config
    from rrg_local.library.query import photo_file
    from rrg_local.vlm.protocol import ImageRef

    model = registry.open_model(settings)
    try:
        with opened(settings) as db:
            emb = EmbeddingStore(db, make_embedder(settings, model), settings.thumbs_dir)
            path = photo_file(db, photo_id)
            photo = ImageRef(path) if path else emb.image(photo_id)
            asker = Asker(ConceptStore(db), model, emb, tagging=tag_config(settings))
            return asker.ask(question, photo=photo, photo_id=photo_id, on_text=on_text)
    finally:
        model.close()
