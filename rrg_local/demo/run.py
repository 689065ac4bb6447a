"""The main job, `rrg demo`: the whole product on the demo world, scored against the world's ground truth.

`run_demo(settings)` works in its own home (`<home>/demo`, never the user's library or models): it generates
the demo library (`world.generate_world_library`, plus a truncated JPEG and a text file: reported and skipped),
indexes it, registers the shipped demo model (`rrg_local/demo/model`, built by `rrg-train demo-model`) and
uses the shipped demo embedder for stage 1 (`rrg_local/demo/embedder`, built by `rrg-train demo-embedder`),
teaches each of the world's personal objects from its 3 earliest photos (the speaker writes the
description, the reference game picks among candidates), auto-tags the library in two stages, scores the
tags against `truth.json` (precision and recall over the photos that were not references), and asks a
handful of questions. Every step is resumable: a second run reuses what the first one built.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rrg_local.config import Settings, save_settings
from rrg_local.vlm.gguf_meta import file_sha256
from rrg_local.wording import count

MODEL_DIR = Path(__file__).resolve().parent / "model"
EMBEDDER_DIR = Path(__file__).resolve().parent / "embedder"
MODEL_NAME = "rrg-demo"
PET_NAMES = ("Bo", "Mila", "Pip", "Rex", "Lulu", "Ziggy", "Otto", "Nori", "Kiki", "Juno", "Fig", "Dot")
LIBRARY = {"seed": 0, "n_concepts": 6, "photos_per_concept": 10, "n_distractor_photos": 60, "size": 224}
# The demo library is dense in concepts (each look-alike pair is in a sixth of it), so stage 1's background
# cut and its stage-2 budget, meant for libraries where a concept is in a few percent of the photos, are off
# (config.toml knobs).
TAG_BACKGROUND_QUANTILE = 0.0
TAG_STAGE2_BUDGET = 0.0
# Stage 1 runs the shipped demo embedder (a CNN that names each photo's attributes): against a concept's reference
# photos, its own unseen photos scored cosine 0.92-1.00, its look-alike's 0.72-0.93, strangers' objects at most
# 0.79, and the best candidate was right for 41 of 42 photos. So stage 2 checks only the best candidate: with the
# top 2, the listener (which cannot tell the mugs' patterns apart) preferred the look-alike (precision 1.00,
# recall 0.69; six libraries: 0.86 / 0.64 on average, against 0.99 / 0.83 with the best only). With the demo
# model's own tower as embedder, the nearest photo held the same object 53% of the time.
TAG_TOP_K = 1
TAG_STAGE2 = "identify"
# ...and a photo whose best concept beats every other by 0.05 in stage 1 is tagged whatever the listener says.
# The six demo libraries, precision / recall without -> with it: 1.00/0.88 -> 1.00/0.98, 1.00/0.79 -> 1.00/1.00,
# 1.00/0.86 -> 1.00/1.00, 1.00/0.79 -> 1.00/0.98, 1.00/0.98 -> 1.00/1.00, 0.91/0.69 -> 0.91/0.74: every listener
# "no" to such a photo was wrong; it still decides the look-alikes the embedder cannot tell apart (seed 5).
TAG_SURE_MARGIN = 0.05
REFERENCES = 3


class DemoError(Exception):
    """The demo cannot run (no shipped model, a damaged one); the message says what to do."""


@dataclass(frozen=True)
class ShippedModel:
    text: Path
    mmproj: Path
    lora: Path | None
    lora_scope: str
    image_max_tokens: int
    manifest: dict


def check_files(files: list[tuple[Path, str]], what: str, *, verify: bool = True) -> None:
    """Each (path, sha256) is there and, with `verify`, unchanged; else a one-line `DemoError` naming `what`."""
    for path, sha256 in files:
        if not path.exists():
            raise DemoError(f"{what} file missing: {path} (reinstall rrg-local)")
        if verify and file_sha256(path) != sha256:
            raise DemoError(f"{what} file damaged (checksum differs from manifest): {path}")


def shipped_model(model_dir: Path = MODEL_DIR, *, verify: bool = True) -> ShippedModel:
    """The demo model shipped in the package, its files checked against the manifest's hashes."""
    manifest_path = model_dir / "manifest.json"
    if not manifest_path.exists():
        raise DemoError(f"no demo model in {model_dir}: build one with `rrg-train demo-model --out DIR --ship`")
    manifest = json.loads(manifest_path.read_text())
    files = {role: model_dir / f["path"] for role, f in manifest["files"].items()}
    check_files([(files[role], f["sha256"]) for role, f in manifest["files"].items()], "demo model", verify=verify)
    scope = "speaker" if manifest.get("lora_speaker_only", True) else "all"
    return ShippedModel(
        files["text"], files["mmproj"], files.get("lora"), scope, int(manifest["image_max_tokens"]), manifest
    )


def shipped_embedder(embedder_dir: Path = EMBEDDER_DIR) -> dict:
    """The demo's stage-1 embedder folder (`trainer.demo_embedder`), its files checked against its manifest;
    returns the manifest."""
    manifest_path = embedder_dir / "manifest.json"
    if not manifest_path.exists():
        raise DemoError(
            f"no demo embedder in {embedder_dir}: build one with `rrg-train demo-embedder --out DIR --ship`"
        )
    manifest = json.loads(manifest_path.read_text())
    check_files([(embedder_dir / name, f["sha256"]) for name, f in manifest["files"].items()], "demo embedder")
    return manifest


def demo_settings(settings: Settings, embedder_dir: Path = EMBEDDER_DIR) -> Settings:
    home = settings.home / "demo"
    return replace(
        settings,
        home=home,
        folders=(home / "library",),
        embedder=str(embedder_dir),
        tag_background_quantile=TAG_BACKGROUND_QUANTILE,
        tag_stage2_budget=TAG_STAGE2_BUDGET,
        tag_top_k=TAG_TOP_K,
        tag_stage2=TAG_STAGE2,
        tag_sure_margin=TAG_SURE_MARGIN,
    )


def prepare_library(settings: Settings, *, fresh: bool = False) -> dict:
    """Generate the demo library once (atomically: a half-written one is never used); returns truth.json."""
    from rrg_local.demo.world import generate_world_library

    home, library = settings.home, settings.home / "library"
    if fresh and home.exists():
        shutil.rmtree(home)
    if not (library / "truth.json").exists():
        tmp = home / "library.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        generate_world_library(tmp, **LIBRARY)
        # Bad files a real library has: both are reported by the index and skipped.
        good = next(tmp.rglob("*.jpg")).read_bytes()
        (tmp / "2024" / "broken transfer.jpg").write_bytes(good[: len(good) // 3])
        (tmp / "2024" / "notes.txt").write_text("not a photo\n")
        shutil.rmtree(library, ignore_errors=True)
        os.replace(tmp, library)
    return json.loads((library / "truth.json").read_text())


def register_model(settings: Settings, model_dir: Path = MODEL_DIR) -> ShippedModel:
    from rrg_local.vlm import registry

    shipped = shipped_model(model_dir)
    registry.add(
        settings, MODEL_NAME, shipped.text, shipped.mmproj, use=True, lora=shipped.lora,
        lora_scope=shipped.lora_scope, image_max_tokens=shipped.image_max_tokens,
    )  # fmt: skip
    return shipped


@dataclass
class TagScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


def score_tags(predicted: set[tuple[int, str]], truth: set[tuple[int, str]], references: set[tuple[int, str]]):
    """Precision/recall of (photo, concept) tags; pairs used as references are neither credited nor missed.

    >>> s = score_tags({(1, "a"), (2, "a"), (3, "b")}, {(1, "a"), (3, "a"), (4, "b")}, {(4, "b")})
    >>> (s.tp, s.fp, s.fn)
    (1, 2, 1)
    """
    predicted, truth = predicted - references, truth - references
    return TagScore(len(predicted & truth), len(predicted - truth), len(truth - predicted))


@dataclass
class DemoReport:
    home: Path
    photos: int = 0
    bad_files: int = 0
    concepts: list[dict] = field(default_factory=list)
    tagging: dict = field(default_factory=dict)
    score: TagScore = field(default_factory=TagScore)
    questions: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _photo_ids(db, library: Path, files: dict) -> dict[str, int]:
    out = {}
    for rel in files:
        row = db.execute(
            "SELECT photo_id FROM paths WHERE raw = ? AND missing = 0", [os.fsencode(str(library / rel))]
        ).fetchone()
        if row:
            out[rel] = row[0]
    return out


def teach(store, emb, model, truth: dict, ids: dict[str, int], echo: Callable[[str], None]) -> dict[str, str]:
    """One concept per world object, named from `PET_NAMES`, from its `REFERENCES` earliest photos.
    Returns {truth name: concept name}."""
    from rrg_local.concepts.describe import write_description

    names = {}
    files = sorted(truth["files"])  # paths sort by date
    for i, (truth_name, info) in enumerate(sorted(truth["concepts"].items())):
        name = PET_NAMES[i % len(PET_NAMES)]
        names[truth_name] = name
        concept = store.find(name)
        if concept is not None and concept.coarse:
            continue
        refs = [ids[f] for f in files if truth_name in truth["files"][f]["concepts"] and f in ids][:REFERENCES]
        concept = concept or store.add(name, info["category"])
        concept = store.add_photos(concept, refs, "reference")
        concept = write_description(model, store, emb, concept)
        echo(f"  <{name}> ({info['category']}, {truth_name}): {concept.coarse} {concept.detailed}")
    return names


def run_demo(
    base: Settings,
    *,
    fresh: bool = False,
    echo: Callable[[str], None] = print,
    model_dir: Path = MODEL_DIR,
    embedder_dir: Path = EMBEDDER_DIR,
) -> DemoReport:
    """The whole demo (see the module docstring); prints progress through `echo`."""
    from rrg_local.cli import _run_scan
    from rrg_local.concepts.ask import Asker
    from rrg_local.concepts.embeddings import EmbeddingStore, make_embedder
    from rrg_local.concepts.store import ConceptStore
    from rrg_local.concepts.tagging import Tagger, tag_config
    from rrg_local.db import open_db
    from rrg_local.library.query import status
    from rrg_local.vlm.protocol import ImageRef
    from rrg_local.vlm.registry import open_model

    shipped_embedder(embedder_dir)
    settings = demo_settings(base, embedder_dir)
    report = DemoReport(settings.home)
    clock = time.monotonic()
    truth = prepare_library(settings, fresh=fresh)
    save_settings(settings)  # `RRG_HOME=<home>/demo rrg ...` and the TUI see the same folders and knobs
    library = settings.home / "library"
    report.timings["library_s"] = time.monotonic() - clock

    clock = time.monotonic()
    db = open_db(settings.db_path)
    _run_scan(settings, db, [library], quiet=True)
    s = status(db)
    report.photos, report.bad_files = s["photos"], s["errors"]
    report.timings["index_s"] = time.monotonic() - clock
    echo(f"indexed {count(report.photos, 'photo')} in {library} ({count(report.bad_files, 'bad file')} reported "
         "and skipped)")  # fmt: skip

    register_model(settings, model_dir)
    model = open_model(settings)
    store = ConceptStore(db)
    emb = EmbeddingStore(db, make_embedder(settings, model), settings.thumbs_dir)
    echo(f"models: {model.info.name} (speaker and listener), {emb.embedder.name} (stage-1 embedder)")
    ids = _photo_ids(db, library, truth["files"])
    clock = time.monotonic()
    echo(f"teaching {len(truth['concepts'])} concepts from {REFERENCES} photos each:")
    names = teach(store, emb, model, truth, ids, echo)
    report.timings["teach_s"] = time.monotonic() - clock
    report.concepts = [
        {"name": c.name, "category": c.category, "coarse": c.coarse, "detailed": c.detailed} for c in store.all()
    ]

    clock = time.monotonic()
    emb.run_jobs()
    tag_report = Tagger(db, model, emb, tag_config(settings)).run()
    report.timings["tag_s"] = time.monotonic() - clock
    report.tagging = {
        "photos": tag_report.photos,
        "stage2_photos": tag_report.stage1_candidates,
        "vlm_calls": tag_report.vlm_calls,
        "stage2_calls": tag_report.stage2_calls,
        "reasoning_calls": tag_report.reasoning_calls,
        "calibration_calls": tag_report.calibration_calls,
        "suggestions": tag_report.suggestions,
        "sure": tag_report.sure,
    }
    predicted = {(t.photo_id, t.concept) for t in store.tags()}
    truth_pairs = {(ids[f], names[n]) for f, info in truth["files"].items() if f in ids for n in info["concepts"]}
    refs = {(p, c.name) for c in store.all() for p in store.photos(c, "reference")}
    report.score = score_tags(predicted, truth_pairs, refs)

    clock = time.monotonic()
    asker = Asker(store, model, emb, max_checks=len(ids), tagging=tag_config(settings))  # scenes: every photo
    first, second = PET_NAMES[0], PET_NAMES[1]
    of_first = [f for f in sorted(truth["files"]) if truth["files"][f]["concepts"] == [_key(names, first)]]
    sample, unseen = of_first[0], of_first[REFERENCES]  # a reference photo; one the model has not been shown
    other = next(f for f in sorted(truth["files"]) if not truth["files"][f]["concepts"])
    scene = truth["files"][unseen]["scene"]
    questions = [
        (f"Show me photos of <{first}>", None),
        (f"Show me <{first}> {'on' if scene in ('beach', 'grass', 'street') else 'in'} the {scene}", None),
        (f"When did I last see {second}?", None),
        (f"How many photos of {second} do I have?", None),
        ("Show me photos in the snow", None),  # no concept: the whole library, its scene checked photo by photo
        (f"Is <{first}> in this photo?", sample),
        (f"Is <{first}> in this photo?", unseen),
        (f"Is <{first}> in this photo?", other),
        ("Where was this photo taken?", unseen),
        ("Who is in this photo?", unseen),
        ("Who is in this photo?", other),
    ]
    for question, rel in questions:
        photo = ImageRef(library / rel) if rel else None
        answer = asker.ask(question, photo=photo)
        report.questions.append(
            {
                "question": question,
                "photo": rel,
                "answer": answer.text,
                "unsure": answer.unsure,
                "cited": [pid for pid, _ in answer.citations],
            }  # fmt: skip
        )
    report.timings["ask_s"] = time.monotonic() - clock
    model.close()
    return report


def _key(names: dict[str, str], name: str) -> str:
    return next(k for k, v in names.items() if v == name)
