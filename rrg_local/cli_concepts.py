"""The `rrg` commands about personal concepts: concept, tag, tags, review, ask.

Registered on the `rrg` group by `rrg_local.cli`; a thin shell like it: library errors become one line
on stderr and an exit code. Commands that need the model open the registered one lazily.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from rrg_local.cli import Context, _fail, main, pass_ctx
from rrg_local.wording import count


def _model(ctx: Context):
    from rrg_local.vlm.registry import RegistryError, open_model

    try:
        return open_model(ctx.settings)
    except RegistryError as exc:
        _fail(str(exc))


def _stores(ctx: Context, model=None, db=None):
    from rrg_local.concepts.embeddings import EmbeddingStore, make_embedder
    from rrg_local.concepts.store import ConceptStore
    from rrg_local.vlm.protocol import VisionError

    db = db if db is not None else ctx.open_db()
    emb = None
    if model is not None:
        try:
            emb = EmbeddingStore(db, make_embedder(ctx.settings, model), ctx.settings.thumbs_dir)
        except VisionError as exc:
            _fail(str(exc))
    return db, ConceptStore(db), emb


def _concept(store, name: str):
    from rrg_local.concepts.store import ConceptError

    try:
        return store.get(name)
    except ConceptError as exc:
        _fail(str(exc))


def resolve_photos(db, settings, refs: tuple[str, ...]) -> list[int]:
    """Photo ids from ids or paths; a path not yet in the index is indexed first."""
    from rrg_local.library.query import photo_at
    from rrg_local.library.scan import Scanner

    ids = []
    for ref in refs:
        if ref.isdigit() and db.execute("SELECT 1 FROM photos WHERE id = ?", [int(ref)]).fetchone():
            ids.append(int(ref))
            continue
        pid = photo_at(db, ref)
        if pid is None:
            report = Scanner(db, settings).scan_paths([os.fsencode(os.path.abspath(ref))])
            if report.errors:
                _fail(f"{ref}: {report.errors[0].reason}")
            pid = photo_at(db, ref)
        if pid is None:
            _fail(f"{ref}: not a photo id or an image file")
        ids.append(pid)
    return ids


@main.group()
def concept() -> None:
    """Your personal concepts (my dog Bo, my blue mug, grandma)."""


@concept.command("add")
@click.argument("name")
@click.argument("photos", nargs=-1, required=True)
@click.option("--category", required=True, help="What it is: dog, mug, person, toy car, ...")
@click.option("--no-describe", is_flag=True, help="Do not write a description now (no model needed).")
@pass_ctx
def concept_add(ctx: Context, name: str, photos: tuple[str, ...], category: str, no_describe: bool) -> None:
    """Teach a concept from 1-5 reference PHOTOS (paths or photo ids); the model describes it."""
    from rrg_local.concepts.store import MAX_REFERENCES, ConceptError

    if not 1 <= len(photos) <= MAX_REFERENCES:
        _fail(f"give 1 to {MAX_REFERENCES} reference photos", 2)
    model = None if no_describe else _model(ctx)
    db, store, emb = _stores(ctx, model)
    ids = resolve_photos(db, ctx.settings, photos)
    try:
        c = store.add(name, category)
        c = store.add_photos(c, ids, "reference")
    except ConceptError as exc:
        _fail(str(exc))
    click.echo(f"added <{c.name}> ({c.category}) with {len(ids)} reference photos")
    if model is not None:
        _describe(model, store, emb, c)
    click.echo("the library is queued for tagging: rrg tag")


def _describe(model, store, emb, c) -> None:
    from rrg_local.concepts.describe import write_description
    from rrg_local.vlm.protocol import VisionError

    click.echo("writing its description...", err=True)
    try:
        c = write_description(model, store, emb, c)
    except VisionError as exc:
        _fail(f"could not describe <{c.name}>: {exc}")
    click.echo(f"coarse:   {c.coarse}\ndetailed: {c.detailed}")


@concept.command("list")
@pass_ctx
def concept_list(ctx: Context) -> None:
    """Concepts with their category and photo counts."""
    _, store, _ = _stores(ctx)
    for c in store.all():
        refs, tags = len(store.positives(c)), len(store.tags(c))
        click.echo(f"<{c.name}>  {c.category}  {count(refs, 'positive photo')}, {tags} tagged  {c.coarse}")


@concept.command("show")
@click.argument("name")
@pass_ctx
def concept_show(ctx: Context, name: str) -> None:
    """Description (and how it was chosen), stage-2 threshold, reference, confirmed and negative photos."""
    from rrg_local.concepts import calibration
    from rrg_local.concepts.tagging import TagConfig

    _, store, _ = _stores(ctx)
    c = _concept(store, name)
    click.echo(f"<{c.name}>  category: {c.category}  (description by {c.description_source})")
    click.echo(f"coarse:   {c.coarse}\ndetailed: {c.detailed}")
    own = calibration.current(store.db, c.id)
    click.echo(f"stage-2 threshold: {calibration.explain(c, own, TagConfig().stage2_default)}")
    if own is not None:
        pos, neg = (" ".join(f"{pid}:{score:.2f}" for pid, score in x) or "-" for x in (own.positives, own.negatives))
        click.echo(f"listener scores (photo:score): its photos {pos}; photos known not to show it {neg}")
    for role in ("reference", "confirmed", "negative"):
        click.echo(f"{role}: {', '.join(map(str, sorted(store.photos(c, role)))) or '-'}")
    cands = store.candidates(c)
    if len(cands) > 1:
        click.echo("candidate descriptions (mean reference-game reward):")
        for d in cands:
            score = "-" if d["score"] is None else f"{d['score']:.2f}"
            click.echo(f"  {'*' if d['chosen'] else ' '} {score:>5}  {d['coarse']} | {d['detailed']}")


@concept.command("edit")
@click.argument("name")
@click.option("--name", "new_name", help="Rename.")
@click.option("--category")
@click.option("--coarse", help="Replace the coarse description.")
@click.option("--detailed", help="Replace the detailed description.")
@click.option("--describe", is_flag=True, help="Write the description again with the model.")
@pass_ctx
def concept_edit(ctx: Context, name, new_name, category, coarse, detailed, describe) -> None:
    """Rename, change the category, or edit the description (by hand or with the model)."""
    from rrg_local.concepts.store import ConceptError

    model = _model(ctx) if describe else None
    _, store, emb = _stores(ctx, model)
    c = _concept(store, name)
    try:
        if new_name:
            c = store.rename(c, new_name)
        if category:
            c = store.set_category(c, category)
        if coarse is not None or detailed is not None:
            c = store.set_description(
                c, c.coarse if coarse is None else coarse, c.detailed if detailed is None else detailed
            )
    except ConceptError as exc:
        _fail(str(exc))
    if model is not None:
        _describe(model, store, emb, c)
    click.echo(f"<{c.name}> updated")


@concept.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True)
@pass_ctx
def concept_rm(ctx: Context, name: str, yes: bool) -> None:
    """Remove a concept and its tags (never a photo)."""
    _, store, _ = _stores(ctx)
    c = _concept(store, name)
    if not yes and not click.confirm(f"remove <{c.name}> and its tags?", err=True):
        return
    store.remove(c)
    click.echo(f"removed <{c.name}>")


@main.command()
@click.option("--limit", type=int, default=None, help="Stop after this many photos (resume later).")
@pass_ctx
def tag(ctx: Context, limit: int | None) -> None:
    """Run pending auto-tagging (embeddings, then the two stages). Ctrl-C stops; run again to resume."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rrg_local.concepts.tagging import Tagger, tag_config

    model = _model(ctx)
    db, store, emb = _stores(ctx, model)
    console = Console(stderr=True)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress:
            t1 = progress.add_task("embedding", total=None)
            emb.run_jobs(on_progress=lambda n: progress.update(t1, completed=n))
            t2 = progress.add_task("tagging", total=None)
            report = Tagger(db, model, emb, tag_config(ctx.settings)).run(
                limit=limit, on_progress=lambda r, total: progress.update(t2, completed=r.photos, total=total)
            )
    except KeyboardInterrupt:
        click.echo("interrupted: finished photos are kept; run rrg tag to continue", err=True)
        sys.exit(130)
    for line in report.errors:
        click.echo(f"error: {line}", err=True)
    click.echo(
        f"tagged {count(report.photos, 'photo')}: {report.stage1_candidates} went to stage 2, "
        f"{count(report.suggestions, 'suggestion')} ({report.sure} stage 1 was sure of), "
        f"{count(report.vlm_calls, 'VLM call')} "
        f"({report.stage2_calls} stage 2 + {report.reasoning_calls} reasoning + {report.calibration_calls} "
        f"calibration), {report.failed} failed"
    )


@main.command()
@click.argument("name")
@click.option("--all", "show_all", is_flag=True, help="Also rejected ones.")
@pass_ctx
def tags(ctx: Context, name: str, show_all: bool) -> None:
    """Photos tagged with a concept: confirmed, and suggested with their score."""
    from rrg_local.concepts.store import score_text

    _, store, _ = _stores(ctx)
    c = _concept(store, name)
    statuses = ("suggested", "confirmed", "rejected") if show_all else ("suggested", "confirmed")
    for t in store.tags(c, statuses=statuses):
        score = "" if t.score is None else f" {score_text(t)}"
        click.echo(f"{t.photo_id:>6}  {t.taken_at[:10]}  {t.status}{score}  {t.path}")


@main.command()
@click.argument("name", required=False)
@click.option("--confirm", "confirms", multiple=True, type=int, help="Photo id to confirm (repeatable).")
@click.option("--reject", "rejects", multiple=True, type=int, help="Photo id to reject (repeatable).")
@pass_ctx
def review(ctx: Context, name: str | None, confirms: tuple[int, ...], rejects: tuple[int, ...]) -> None:
    """Confirm or reject suggested tags (interactive on a terminal, or with --confirm/--reject)."""
    from rrg_local.concepts.store import score_text
    from rrg_local.concepts.tagging import TagConfig, calibrate

    _, store, _ = _stores(ctx)
    concepts = [_concept(store, name)] if name else store.all()
    if (confirms or rejects) and len(concepts) != 1:
        _fail("name the concept when using --confirm or --reject", 2)
    for c in concepts:
        verdicts = {pid: True for pid in confirms} | {pid: False for pid in rejects}
        if not verdicts:
            pending = store.tags(c, statuses=("suggested",))
            if not sys.stdin.isatty():
                for t in pending:
                    click.echo(f"<{c.name}> {t.photo_id:>6} {score_text(t)} {t.path}  {t.reasoning or ''}")
                continue
            for t in pending:
                click.echo(f"<{c.name}>? photo {t.photo_id} ({t.taken_at[:10]}, score {score_text(t)}) {t.path}")
                if t.reasoning:
                    click.echo(f"  {t.reasoning}")
                key = click.prompt("  [y]es / [n]o / [s]kip / [q]uit", default="s", show_default=False).lower()
                if key.startswith("q"):
                    break
                if key[:1] in ("y", "n"):
                    verdicts[t.photo_id] = key.startswith("y")
        for pid, ok in verdicts.items():
            store.review(pid, c, ok)
        if verdicts:
            yes, no = store.verdicts(c)
            store.set_threshold(c, calibrate(yes, no, TagConfig().stage2_default) if yes and no else c.threshold)
            confirmed = sum(verdicts.values())
            click.echo(f"<{c.name}>: {confirmed} confirmed, {len(verdicts) - confirmed} rejected")
            if confirmed:  # new positives change stage 1: look at the library again (rrg tag)
                store.requeue(store.get(c.id))
                click.echo(f"<{c.name}> has new reference photos: the library is queued for tagging (rrg tag)")


@main.command()
@click.argument("question")
@click.option("--photo", type=click.Path(path_type=Path), help="Ask about this photo (path or photo id).")
@click.option(
    "--checks", type=click.IntRange(1), default=10, show_default=True,
    help="At most this many photos the model looks at for a scene (\"at the beach\"); in a question about the "
    "whole library, this many more each time it is asked (the checks are kept).",
)  # fmt: skip
@pass_ctx
def ask(ctx: Context, question: str, photo: Path | None, checks: int) -> None:
    """Ask about a photo ("Is Bo in this photo?") or your library ("When did I last see my blue mug?")."""
    from rrg_local.concepts.ask import Asker, route
    from rrg_local.concepts.tagging import tag_config
    from rrg_local.library.query import photo_file
    from rrg_local.vlm.protocol import ImageRef, VisionError

    db, store, _ = _stores(ctx)
    needs_model = photo is not None or route(question, [c.name for c in store.all()], has_photo=False).scene
    model = _model(ctx) if needs_model else None
    db, store, emb = _stores(ctx, model, db)
    image, pid = None, None
    if photo is not None:
        (pid,) = resolve_photos(db, ctx.settings, (str(photo),))
        path = photo_file(db, pid)
        image = ImageRef(path) if path else emb.image(pid)
    streamed = []

    def stream(piece: str) -> None:
        streamed.append(piece)
        click.echo(piece, nl=False)

    try:
        asker = Asker(store, model, emb, max_checks=checks, tagging=tag_config(ctx.settings))
        answer = asker.ask(question, photo=image, photo_id=pid, on_text=stream)
    except (VisionError, ValueError) as exc:
        _fail(str(exc))
    if streamed:
        click.echo()
    else:
        click.echo(answer.text)
    if answer.unsure:
        click.echo("(not sure: check the photos cited)", err=True)
