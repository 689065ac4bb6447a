"""Benchmark of auto-tagging cost: VLM calls against the naive N x C, stage-1 recall, projected CPU hours.

Run: `.venv/bin/python bench/tagging.py [--photos 200]`. For C = 1, 5 and 20 concepts it generates a
library (each concept: 3 reference photos and 4 more photos of it, as re-framed, re-lit, re-encoded
variants; the rest unrelated), indexes it, teaches the concepts, runs the tagger with the tiny model, and
prints stage-1 and stage-2 call counts, photos/s, stage-1 recall (the share of a concept's photos for
which stage 1 hands the concept to stage 2) and our VLM calls as a ratio of the naive N x C. The tiny
model's embeddings are random; `--world` runs the same on the demo world (C personal objects in look-alike
pairs, 7 photos each in varied scenes, the rest strangers' photos) with the shipped demo model, whose
vision tower was trained.

It then projects the CPU hours for 10,000 photos and 20 concepts at real (2B) size from per-call costs
measured by `bench/runtime.py --size 2b` and `bench/embedders.py` (pass them as --naive-call-s,
--encode-s, --prefill-s, --embed-onnx-s): naive = N x C plain recognition calls; ours = N stage-1
embeddings + the measured share of photos that reach stage 2, each one call whose thumbnail is already
encoded (VLM embedder) or encoded then (dedicated ONNX embedder), plus each concept's calibration (its 3
reference photos and up to 8 photos of other concepts, once), plus each suggestion's reasoning follow-up
(--explain-s, from `bench/runtime.py --size 2b`).
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def variant(img: Image.Image, rng: random.Random) -> Image.Image:
    """The same subject photographed again: shifted, scaled, re-lit."""
    w, h = img.size
    dx, dy, s = rng.randint(-8, 8), rng.randint(-6, 6), rng.uniform(0.92, 1.0)
    out = img.transform(img.size, Image.Transform.AFFINE, (s, 0, dx, 0, s, dy), resample=Image.Resampling.BILINEAR)
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15)).resize((w, h))


def make_library(dest: Path, n_photos: int, n_concepts: int, seed: int = 0):
    from tests.conftest import draw_photo

    rng = random.Random(seed)
    truth: dict[str, int] = {}  # relpath -> concept index (positives only)
    refs: dict[int, list[str]] = {}
    count = 0

    def save(rel: str, img: Image.Image) -> None:
        nonlocal count
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(70, 92))
        path.write_bytes(buf.getvalue())
        count += 1

    for c in range(n_concepts):
        base = draw_photo(10_000 + c, (320, 240))
        refs[c] = []
        for i in range(3):
            rel = f"c{c:02d}/ref{i}.jpg"
            save(rel, variant(base, rng))
            refs[c].append(rel)
        for i in range(4):
            rel = f"c{c:02d}/photo{i}.jpg"
            save(rel, variant(base, rng))
            truth[rel] = c
    i = 0
    while count < n_photos:
        save(f"other/{i:05d}.jpg", draw_photo(50_000 + i, (320, 240)))
        i += 1
    return refs, truth


def make_world_library(dest: Path, n_photos: int, n_concepts: int, seed: int = 0):
    """The demo world instead: C personal objects (look-alike pairs) x 7 photos in varied scenes, the rest
    strangers' photos; each concept's 3 earliest photos are its references."""
    import json

    from rrg_local.demo.world import generate_world_library

    generate_world_library(dest, seed=seed, n_concepts=n_concepts, photos_per_concept=7,
                           n_distractor_photos=max(0, n_photos - 7 * n_concepts))  # fmt: skip
    files = json.loads((dest / "truth.json").read_text())["files"]
    names = sorted({c for info in files.values() for c in info["concepts"]})
    refs: dict[int, list[str]] = {i: [] for i in range(len(names))}
    truth: dict[str, int] = {}
    for rel in sorted(files):  # dated paths: earliest first
        for name in files[rel]["concepts"]:
            c = names.index(name)
            if len(refs[c]) < 3:
                refs[c].append(rel)
            else:
                truth[rel] = c
    return refs, truth


def run(
    n_photos: int,
    n_concepts: int,
    model,
    settings_home: Path,
    quantile: float,
    budget: float,
    world: bool = False,
    embedder=None,
) -> dict:
    """`embedder`: stage 1's (default: the model's own tower)."""
    from rrg_local.concepts.embeddings import EmbeddingStore, VLMEmbedder
    from rrg_local.concepts.store import ConceptStore
    from rrg_local.concepts.tagging import TagConfig, Tagger, retrieve
    from rrg_local.config import Settings
    from rrg_local.db import open_db
    from rrg_local.library.scan import Scanner

    settings = replace(Settings(home=settings_home), scan_workers=2)
    lib = settings_home / "lib"
    refs, truth = (make_world_library if world else make_library)(lib, n_photos, n_concepts)
    db = open_db(settings.db_path)
    Scanner(db, settings).scan([lib])
    pid = {r[1][len(str(lib)) + 1 :]: r[0] for r in db.execute("SELECT photo_id, path FROM paths")}
    store = ConceptStore(db)
    emb = EmbeddingStore(db, embedder or VLMEmbedder(model), settings.thumbs_dir)
    for c, rels in refs.items():
        concept = store.add(f"concept{c}", "thing")
        store.add_photos(concept, [pid[r] for r in rels])
    t = time.perf_counter()
    emb.run_jobs()
    tagger = Tagger(db, model, emb, TagConfig(background_quantile=quantile, stage2_budget=budget))
    report = tagger.run()
    seconds = time.perf_counter() - t
    protos = tagger.prototypes()
    names = {p.concept.name: p for p in protos}
    found = sum(
        any(p.concept.name == f"concept{c}" for p, _ in retrieve(emb.get(pid[rel]), protos, tagger.config.top_k))
        for rel, c in truth.items()
    )
    del names
    db.close()
    return {
        "photos": report.photos,
        "stage2": report.stage2_calls,
        "reasoning": report.reasoning_calls,
        "calibration": report.calibration_calls,
        "vlm_calls": report.vlm_calls,
        "per_s": report.photos / seconds,
        "recall": found / len(truth),
        "share_stage2": report.stage1_candidates / report.photos,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--naive-call-s", type=float, default=None, help="2B: one plain recognition call on a photo")
    ap.add_argument("--encode-s", type=float, default=None, help="2B: seconds to encode one thumbnail (vision tower)")
    ap.add_argument("--prefill-s", type=float, default=None, help="2B: seconds for one call's prompt, photo cached")
    ap.add_argument("--quantile", type=float, default=0.95, help="TagConfig.background_quantile (0: off)")
    ap.add_argument("--budget", type=float, default=0.3, help="TagConfig.stage2_budget (0: off)")
    ap.add_argument("--embed-onnx-s", type=float, default=None, help="seconds per photo, dedicated ONNX embedder")
    ap.add_argument("--explain-s", type=float, default=0.0, help="2B: one tag's reasoning follow-up, prompt cached")
    ap.add_argument("--world", action="store_true", help="the demo world and the shipped demo model (a trained tower)")
    ap.add_argument("--demo-embedder", action="store_true", help="with --world: stage 1 on the shipped demo embedder")
    args = ap.parse_args()

    from rrg_local.concepts.calibration import MAX_NEGATIVES
    from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel, route_logs
    from trainer.tiny import tiny_gguf

    route_logs()
    embedder = None
    if args.world:
        from rrg_local.demo.run import shipped_model

        shipped = shipped_model()
        llama = LlamaConfig(model=shipped.text, mmproj=shipped.mmproj, n_threads=2,
                            image_max_tokens=shipped.image_max_tokens)  # fmt: skip
        label = "demo world, shipped demo model"
        if args.demo_embedder:
            from rrg_local.concepts.onnx_embedder import OnnxEmbedder
            from rrg_local.demo.run import EMBEDDER_DIR

            embedder = OnnxEmbedder(EMBEDDER_DIR)
            label += " and demo embedder"
    else:
        pair = tiny_gguf().pair("f16")
        llama = LlamaConfig(model=pair.text, mmproj=pair.mmproj, n_threads=2, image_max_tokens=64)
        label = "tiny model"
    rows = []
    for c in (1, 5, 20):
        with tempfile.TemporaryDirectory() as tmp, LlamaVisionModel(llama) as model:
            r = run(args.photos, c, model, Path(tmp), args.quantile, args.budget, args.world, embedder)
        naive = r["photos"] * c
        rows.append((c, r, naive))

    print(f"{label}, {args.photos} photos per library, background quantile {args.quantile}, budget {args.budget}\n")
    head = (
        f"{'C':>3} {'photos':>6} {'stage-2':>7} {'reason':>6} {'calib':>5} {'VLM calls':>9} "
        f"{'naive NxC':>9} {'ours/naive':>10} "
        f"{'calls/photo':>11} {'stage-1 recall':>14} {'photos/s':>8}"
    )
    print(head)
    for c, r, naive in rows:
        print(
            f"{c:>3} {r['photos']:>6} {r['stage2']:>7} {r['reasoning']:>6} {r['calibration']:>5} {r['vlm_calls']:>9} "
            f"{naive:>9} "
            f"{r['vlm_calls'] / naive:>10.3f} {r['vlm_calls'] / r['photos']:>11.2f} {r['recall']:>14.2f} "
            f"{r['per_s']:>8.1f}"
        )

    if args.encode_s and args.prefill_s and args.naive_call_s:
        n, c = 10_000, 20
        last = rows[-1][1]
        share = last["share_stage2"]
        naive_h = n * c * args.naive_call_s / 3600
        # each concept's own threshold, once: its 3 references and up to MAX_NEGATIVES photos of other concepts
        extra = c * (3 + MAX_NEGATIVES) * (args.encode_s + args.prefill_s)
        # each suggestion's reasoning follow-up, at the measured share of photos that got one
        extra += n * last["reasoning"] / last["photos"] * args.explain_s
        vlm_h = (n * args.encode_s + n * share * args.prefill_s + extra) / 3600
        print(
            f"\nprojection, {n} photos x {c} concepts at 2B size (share reaching stage 2: {share:.2f}, "
            f"reasoning follow-ups: {last['reasoning'] / last['photos']:.2f} per photo at {args.explain_s} s):"
        )
        print(f"  naive (N x C recognition calls):        {naive_h:10.1f} CPU h   1.00")
        print(f"  ours, VLM embedder for stage 1:          {vlm_h:10.1f} CPU h   {naive_h / vlm_h:.0f}x less")
        if args.embed_onnx_s:
            onnx_h = (n * args.embed_onnx_s + n * share * (args.encode_s + args.prefill_s) + extra) / 3600
            print(f"  ours, dedicated ONNX embedder:           {onnx_h:10.1f} CPU h   {naive_h / onnx_h:.0f}x less")


if __name__ == "__main__":
    main()
