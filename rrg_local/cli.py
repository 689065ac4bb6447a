"""The `rrg` command: the thin shell over the library. Turns exceptions into one-line messages and exit codes.

Results go to stdout, diagnostics (bad files, progress, notices) to stderr. Every command loads the
settings once (`RRG_HOME` honoured) and opens the database itself; nothing happens at import.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

import click

from rrg_local.config import Settings, load_settings, save_settings
from rrg_local.wording import count


class Context:
    def __init__(self) -> None:
        self.settings = load_settings()
        for notice in self.settings.notices:
            click.echo(f"warning: {notice}", err=True)

    def open_db(self):
        from rrg_local.db import open_db

        return open_db(self.settings.db_path)


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rrg-local")
def main() -> None:
    """rrg-local: an offline personal photo assistant. Data lives in $RRG_HOME (or your user data dir)."""


# ---- library -------------------------------------------------------------------------------------


def _print_error(err) -> None:
    click.echo(f"error: {err.path}: {err.reason}", err=True)


def _summary(report, settings: Settings) -> str:
    c = report.counts()
    parts = [
        count(c["seen"], "image file"),
        count(c["new_photos"], "new photo"),
        count(c["new_paths"], "new path") + " of known photos",
        f"{c['unchanged']} unchanged",
        f"{c['missing']} newly missing",
        count(c["errors"], "error"),
    ]
    if c["known_errors"]:
        parts.append(count(c["known_errors"], "known bad file"))
    if c["skipped"]:
        parts.append(count(c["skipped"], "other file") + " skipped")
    return "indexed: " + ", ".join(parts) + f" in {report.seconds:.1f}s"


def _run_scan(settings: Settings, db, roots, *, quiet: bool = False):
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from rrg_local.library.scan import Scanner

    console = Console(stderr=True)
    show = console.is_terminal and not quiet
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not show,
    ) as progress:
        task = progress.add_task("scanning", total=None)

        def on_progress(report) -> None:
            progress.update(
                task,
                description=f"{count(report.seen, 'file')}: {report.new_photos} new, "
                f"{report.unchanged} unchanged, {count(len(report.errors), 'error')}",
            )

        scanner = Scanner(db, settings, on_error=_print_error, on_progress=on_progress)
        return scanner.scan(roots)


def _roots(settings: Settings, paths: tuple[str, ...]) -> list[Path]:
    roots = [Path(p) for p in paths] or list(settings.folders)
    if not roots:
        _fail("no folders given and none configured: rrg index PATH, or rrg folders add PATH", 2)
    return roots


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@pass_ctx
def index(ctx: Context, paths: tuple[str, ...]) -> None:
    """Scan folders (default: the configured ones) into the index. Re-running is cheap (stat only)."""
    roots = _roots(ctx.settings, paths)
    db = ctx.open_db()
    try:
        report = _run_scan(ctx.settings, db, roots)
    except KeyboardInterrupt:
        click.echo("interrupted: what was indexed is kept; run the same command to continue", err=True)
        sys.exit(130)
    for line in report.unavailable:
        click.echo(f"error: {line}", err=True)
    click.echo(_summary(report, ctx.settings))
    if report.unavailable:
        sys.exit(1)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--debounce", type=float, default=None, help="Seconds a file must be quiet before indexing.")
@click.option("--rescan", type=float, default=None, help="Seconds between full rescans (0: never).")
@click.option("--tag", "auto_tag", is_flag=True, help="Also auto-tag new photos as they arrive (needs a model).")
@pass_ctx
def watch(ctx: Context, paths: tuple[str, ...], debounce: float | None, rescan: float | None, auto_tag: bool) -> None:
    """Scan, then follow changes in the folders until interrupted (Ctrl-C). New photos are queued for tagging."""
    from rrg_local.library.scan import Scanner
    from rrg_local.library.watch import Watcher

    roots = _roots(ctx.settings, paths)
    for root in roots:
        if not root.is_dir():
            _fail(f"library folder not available: {root}")
    db = ctx.open_db()
    settings = ctx.settings
    tagger = _watch_tagger(ctx, db) if auto_tag else None

    def on_report(what: str, report) -> None:
        if what in ("scan", "rescan") or report.new_photos or report.new_paths or report.missing or report.errors:
            click.echo(f"[{what}] {_summary(report, settings)}", err=False)
        if tagger is not None and (report.new_photos or what == "scan"):
            tagged = tagger()
            if tagged.photos:
                click.echo(f"[tag] {count(tagged.photos, 'photo')} tagged, {count(tagged.suggestions, 'suggestion')}")

    scanner = Scanner(db, settings, on_error=_print_error)
    watcher = Watcher(
        scanner,
        roots,
        debounce_s=settings.debounce_s if debounce is None else debounce,
        rescan_interval_s=settings.rescan_interval_s if rescan is None else rescan,
        on_report=on_report,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"watching {', '.join(str(r) for r in roots)} (Ctrl-C to stop)", err=True)
    try:
        watcher.run(stop)
    except KeyboardInterrupt:
        pass
    click.echo("stopped", err=True)


def _watch_tagger(ctx: Context, db):
    """A callable that tags what is pending, on the watcher's own database connection."""
    from rrg_local.concepts.embeddings import EmbeddingStore, make_embedder
    from rrg_local.concepts.tagging import Tagger, tag_config
    from rrg_local.vlm.protocol import VisionError
    from rrg_local.vlm.registry import RegistryError, open_model

    try:
        model = open_model(ctx.settings)
        emb = EmbeddingStore(db, make_embedder(ctx.settings, model), ctx.settings.thumbs_dir)
    except (RegistryError, VisionError) as exc:
        _fail(str(exc))

    def run():
        emb.run_jobs()
        return Tagger(db, model, emb, tag_config(ctx.settings)).run()

    return run


@main.command()
@pass_ctx
def status(ctx: Context) -> None:
    """Counts: photos, missing photos, bad files, pending jobs, last scan."""
    from rrg_local.library.query import status as get_status

    s = get_status(ctx.open_db())
    click.echo(f"home:          {ctx.settings.home}")
    click.echo(f"photos:        {s['photos']}")
    click.echo(f"missing:       {s['missing']}")
    click.echo(f"paths:         {s['paths']}")
    click.echo(f"errors:        {s['errors']}")
    click.echo(f"pending jobs:  {s['pending_jobs']}")
    click.echo(f"last scan:     {s['last_scan'] or 'never'}")


@main.command()
@click.option("--since", help="From this date: YYYY, YYYY-MM or YYYY-MM-DD.")
@click.option("--until", help="Up to and including this date.")
@click.option("--folder", type=click.Path(path_type=str), help="Only photos with a path under this folder.")
@click.option("--missing", "include_missing", is_flag=True, help="Include photos whose files are gone.")
@click.option("--limit", type=int, default=None)
@pass_ctx
def photos(ctx: Context, since, until, folder, include_missing, limit) -> None:
    """List indexed photos by capture date."""
    from rrg_local.library.query import list_photos

    try:
        rows = list_photos(
            ctx.open_db(), since=since, until=until, folder=folder, include_missing=include_missing, limit=limit
        )
    except ValueError as exc:
        _fail(str(exc), 2)
    for r in rows:
        flag = " (missing)" if r["missing"] else ""
        camera = r["camera"] or "-"
        click.echo(f"{r['id']:>6}  {r['taken_at']}  {r['width']}x{r['height']:<5} {camera:<16} {r['path']}{flag}")


@main.command()
@pass_ctx
def errors(ctx: Context) -> None:
    """List files that could not be indexed, with the reason."""
    from rrg_local.library.query import list_errors

    for e in list_errors(ctx.open_db()):
        click.echo(f"{e['path']}: {e['reason']} [{e['kind']}]")


@main.command()
@click.option("--distance", type=int, default=6, show_default=True, help="Max differing bits of the phash.")
@pass_ctx
def dupes(ctx: Context, distance: int) -> None:
    """Group near-duplicate photos (bursts, re-encoded or resized copies)."""
    from rrg_local.library.dupes import group_near_duplicates
    from rrg_local.library.query import list_photos, phashes

    db = ctx.open_db()
    rows = {r["id"]: r for r in list_photos(db)}
    for n, group in enumerate(group_near_duplicates(phashes(db), distance), 1):
        click.echo(f"group {n}:")
        for pid in group:
            click.echo(f"  {pid:>6}  {rows[pid]['path']}")


@main.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def purge(ctx: Context, yes: bool) -> None:
    """Forget photos whose files are gone (their tags go too). Never touches your files."""
    from rrg_local.library.scan import Scanner

    db = ctx.open_db()
    n = db.execute("SELECT count(*) FROM photos WHERE missing = 1").fetchone()[0]
    if n and not yes and not click.confirm(f"forget {n} missing photos?", err=True):
        return
    click.echo(f"purged {Scanner(db, ctx.settings).purge_missing()} missing photos")


@main.group()
def folders() -> None:
    """The library folders that `rrg index` and `rrg watch` use by default."""


@folders.command("list")
@pass_ctx
def folders_list(ctx: Context) -> None:
    for f in ctx.settings.folders:
        click.echo(str(f))


@folders.command("add")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@pass_ctx
def folders_add(ctx: Context, path: Path) -> None:
    path = path.absolute()
    if path not in ctx.settings.folders:
        save_settings(replace(ctx.settings, folders=(*ctx.settings.folders, path)))
    click.echo(f"library folders: {len(set(ctx.settings.folders) | {path})}")


@folders.command("remove")
@click.argument("path", type=click.Path(path_type=Path))
@pass_ctx
def folders_remove(ctx: Context, path: Path) -> None:
    path = path.absolute()
    if path not in ctx.settings.folders:
        _fail(f"not a library folder: {path}", 2)
    save_settings(replace(ctx.settings, folders=tuple(f for f in ctx.settings.folders if f != path)))


# ---- models --------------------------------------------------------------------------------------


@main.group()
def model() -> None:
    """The local multimodal models (GGUF + mmproj pairs) and which one is in use."""


def _registry_call(fn, *args, **kwargs):
    from rrg_local.vlm.registry import RegistryError

    try:
        return fn(*args, **kwargs)
    except RegistryError as exc:
        _fail(str(exc))


@model.command("add")
@click.argument("name")
@click.option("--gguf", "gguf", required=True, type=click.Path(path_type=Path), help="The text model GGUF.")
@click.option("--mmproj", required=True, type=click.Path(path_type=Path), help="The vision projector GGUF.")
@click.option("--chat-format", default=None, help="Override the chat template (default: the GGUF's own).")
@click.option("--lora", type=click.Path(path_type=Path), help="A GGUF LoRA adapter to apply (rrg-train export).")
@click.option(
    "--lora-scope",
    type=click.Choice(["all", "speaker"]),
    default="all",
    show_default=True,
    help="speaker: apply the LoRA only when describing concepts (an RRG speaker adapter).",
)
@click.option("--image-max-tokens", type=int, help="Cap on image tokens (a small model's training size).")
@click.option("--use", "use_it", is_flag=True, help="Make it the model in use.")
@pass_ctx
def model_add(
    ctx: Context,
    name: str,
    gguf: Path,
    mmproj: Path,
    chat_format: str | None,
    lora: Path | None,
    lora_scope: str,
    image_max_tokens: int | None,
    use_it: bool,
) -> None:
    """Register a GGUF pair under NAME (both files are checked first)."""
    from rrg_local.vlm import registry

    entry = _registry_call(
        registry.add, ctx.settings, name, gguf, mmproj, chat_format=chat_format, use=use_it, lora=lora,
        lora_scope=lora_scope, image_max_tokens=image_max_tokens,
    )  # fmt: skip
    click.echo(f"added model {entry.name}: {entry.gguf} + {entry.mmproj}")


@model.command("list")
@pass_ctx
def model_list(ctx: Context) -> None:
    """List registered models; * marks the one in use."""
    from rrg_local.vlm import registry

    models, default = _registry_call(registry.entries, ctx.settings)
    if not models:
        click.echo("no models: rrg model add NAME --gguf FILE --mmproj FILE, or rrg model pull REPO", err=True)
    for m in models:
        missing = "" if m.gguf.exists() and m.mmproj.exists() else "  (files missing)"
        click.echo(f"{'*' if m.name == default else ' '} {m.name:<20} {m.gguf}{missing}")


@model.command("use")
@click.argument("name")
@pass_ctx
def model_use(ctx: Context, name: str) -> None:
    """Use NAME from now on."""
    from rrg_local.vlm import registry

    _registry_call(registry.use, ctx.settings, name)
    click.echo(f"using model {name}")


@model.command("pull")
@click.argument("repo")
@click.option("--name", default=None, help="Register under this name (default: the repository's name).")
@click.option("--quant", default="Q4_K_M", show_default=True, help="Preferred quantization of the text model.")
@pass_ctx
def model_pull(ctx: Context, repo: str, name: str | None, quant: str) -> None:
    """Download a GGUF + mmproj pair from the Hugging Face hub (the only command that uses the network)."""
    from rrg_local.vlm import registry

    entry = _registry_call(registry.pull, ctx.settings, repo, name=name, quant=quant)
    click.echo(f"pulled and added model {entry.name}")


# ---- demo ----------------------------------------------------------------------------------------


@main.command()
@click.option("--fresh", is_flag=True, help="Start over: regenerate the demo library, index, concepts and tags.")
@click.option("--tui", "open_tui", is_flag=True, help="Then open the terminal UI on the demo library.")
@pass_ctx
def demo(ctx: Context, fresh: bool, open_tui: bool) -> None:
    """The whole product on a generated library with the shipped demo model, scored against ground truth.

    Uses its own home (<home>/demo): generates the library, indexes it, teaches 6 personal objects from 3
    photos each, auto-tags the library, reports tag precision and recall, and answers a few questions.
    """
    from rrg_local.demo.run import DemoError, demo_settings, run_demo
    from rrg_local.vlm.protocol import VisionError

    try:
        report = run_demo(ctx.settings, fresh=fresh, echo=click.echo)
    except (DemoError, VisionError) as exc:
        _fail(str(exc))
    t = report.tagging
    click.echo(
        f"\nauto-tagged {count(t['photos'], 'photo')}: {t['stage2_photos']} went to stage 2, "
        f"{count(t['vlm_calls'], 'VLM call')}: "
        f"{t['stage2_calls']} to tag ({t['stage2_calls'] / max(1, t['photos']):.2f} per photo; naive: "
        f"{len(report.concepts)} per photo), {t['reasoning_calls']} to explain the tags, {t['calibration_calls']} "
        f"to calibrate the concepts; {t['suggestions']} tags ({t['sure']} of them stage 1 was sure of)"
    )
    s = report.score
    click.echo(
        f"tags vs ground truth (reference photos excluded): precision {s.precision:.2f} ({s.tp}/{s.tp + s.fp}), "
        f"recall {s.recall:.2f} ({s.tp}/{s.tp + s.fn})"
    )
    click.echo("\nquestions:")
    for q in report.questions:
        about = f"  [photo {q['photo']}]" if q["photo"] else ""
        click.echo(f"? {q['question']}{about}")
        for line in q["answer"].splitlines():
            click.echo(f"  {line}")
    times = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in report.timings.items())
    click.echo(f"\ntimes: {times}; data in {report.home}")
    if open_tui:
        from tui.app import RRGApp

        RRGApp(demo_settings(ctx.settings)).run()


@main.command()
@pass_ctx
def tui(ctx: Context) -> None:
    """Open the terminal UI: browse the library, review tags, see concepts, ask questions."""
    from tui.app import RRGApp

    RRGApp(ctx.settings).run()


def _register_commands() -> None:
    """The concept commands live in their own module; importing it registers them on `main`."""
    import rrg_local.cli_concepts  # noqa: F401


_register_commands()


if __name__ == "__main__":
    # Run as `python -m rrg_local.cli`: use the imported module, on which the concept commands registered.
    from rrg_local.cli import main as _main

    _main()
