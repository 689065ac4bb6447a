"""Benchmark of stage-1 embedders: the ONNX vision tower against the VLM's own encoder, photos per second.

Run: `.venv/bin/python bench/embedders.py [--size b16] [--threads 2]`. Every embedder embeds the same 100
thumbnail-sized (320x240) JPEGs, as `EmbeddingStore` hands them over (a file path, orientation already
applied); each is loaded and warmed up on another photo first. Prints one table; every speed is also a
ratio against the baseline measured in the same run: decoding the photos alone (`prepare`, which every
embedder does first), so the ratios hold across machines.

Rows: the tiny random CLIP (`trainer.tiny_clip`, 64 px) one photo at a time and in batches of 16; the
tiny Qwen2-VL through `VLMEmbedder` (`trainer.tiny.tiny_gguf`, f16). If a Qwen2-VL-2B-shaped model
(`trainer.tiny.QWEN2VL_2B`) is already complete in the cache, also `VLMEmbedder` on 10 photos at that size;
this script never builds it. `--size b16` adds a random-weight ViT-B/16 CLIP tower (86 M parameters,
224 px, built and cached on first use, about a minute): the real dedicated embedder's cost.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_PHOTOS = 100
N_PHOTOS_2B = 10
SIZE = (320, 240)


def write_photos(folder: Path, seeds: range) -> list[Path]:
    from tests.conftest import draw_photo

    paths = []
    for seed in seeds:
        buf = io.BytesIO()
        draw_photo(seed, SIZE).save(buf, "JPEG", quality=85)
        path = folder / f"p{seed:04d}.jpg"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def rate(fn, refs) -> float:
    """Photos per second of `fn(refs)`."""
    t = time.perf_counter()
    fn(refs)
    return len(refs) / (time.perf_counter() - t)


def find_2b():
    """The GGUF pair of an already complete Qwen2-VL-2B-shaped cache entry, or None (never builds one).

    Cache entries exist only once complete (`trainer.cache` renames them into place), so an entry folder with
    the 2B shapes is usable. Prefers the production mix (Q4_K_M text, Q8_0 projector), else f16.
    """
    from trainer.cache import KEY_FILE, cache_root
    from trainer.gguf import GGUFPair
    from trainer.tiny import CACHE_NAME, QWEN2VL_2B, STEM

    root = cache_root()
    entries, derived = [], {}
    for entry in root.glob(f"{CACHE_NAME}-*"):
        try:
            parts = json.loads((entry / KEY_FILE).read_text())["parts"]
        except (OSError, ValueError, KeyError):
            continue
        config = parts.get("config") or {}
        if (config.get("hidden_size"), config.get("vision_embed_dim")) == (
            QWEN2VL_2B.hidden_size,
            QWEN2VL_2B.vision_embed_dim,
        ):
            entries.append(entry)
        elif "base" in parts:
            derived[(parts["base"], parts["kind"], parts["qtype"])] = entry
    for entry in sorted(entries, key=lambda e: e.stat().st_mtime, reverse=True):
        text = derived.get((entry.name, "text", "Q4_K_M"))
        mmproj = derived.get((entry.name, "mmproj", "Q8_0"))
        if text and mmproj:
            return GGUFPair(text / f"{STEM}-Q4_K_M.gguf", mmproj / f"mmproj-{STEM}-Q8_0.gguf"), "Q4_K_M + Q8_0"
        pair = GGUFPair(entry / "gguf" / f"{STEM}-f16.gguf", entry / "gguf" / f"mmproj-{STEM}-f16.gguf")
        if pair.text.exists() and pair.mmproj.exists():
            return pair, "f16"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "b16"], default="tiny", help="b16: also a ViT-B/16-shaped tower")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-2b", action="store_true", help="skip the 2B VLM rows even if the model is cached")
    args = ap.parse_args()

    from rrg_local.concepts.embeddings import VLMEmbedder
    from rrg_local.concepts.onnx_embedder import OnnxEmbedder
    from rrg_local.vlm.images import prepare
    from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel, route_logs
    from rrg_local.vlm.protocol import ImageRef
    from trainer.cache import entry_dir
    from trainer.tiny import tiny_gguf
    from trainer.tiny_clip import CACHE_NAME, CLIP_B16, tiny_clip, tiny_clip_parts

    route_logs()
    rows: list[tuple[str, int, float, str]] = []  # name, photos, photos/s, note
    with tempfile.TemporaryDirectory(prefix="rrg-bench-embed-") as tmp:
        paths = write_photos(Path(tmp), range(N_PHOTOS + 1))
        warm, refs = ImageRef(paths[0], orientation=1), [ImageRef(p, orientation=1) for p in paths[1:]]

        base = rate(lambda rs: [prepare(r, max_side=SIZE[0], max_pixels=150_000_000) for r in rs], refs)
        rows.append(("decode only (prepare, Pillow)", len(refs), base, "baseline"))

        def onnx_rows(label: str, model_dir: Path) -> None:
            emb = OnnxEmbedder(model_dir, threads=args.threads)
            emb.embed_many([warm] * 2)
            rows.append(
                (f"{label}, 1 photo per call", len(refs), rate(lambda rs: [emb.embed(r) for r in rs], refs), "")
            )
            rows.append((f"{label}, embed_many batch 16", len(refs), rate(emb.embed_many, refs), ""))

        onnx_rows("onnx tiny CLIP 64px 32-d", tiny_clip())

        pair = tiny_gguf().pair("f16")
        cfg = LlamaConfig(
            model=pair.text, mmproj=pair.mmproj, n_ctx=2048, n_threads=args.threads, image_max_tokens=None
        )
        with LlamaVisionModel(cfg) as model:
            emb = VLMEmbedder(model)
            emb.embed(warm)
            speed = rate(lambda rs: [emb.embed(r) for r in rs], refs)
            tokens = model.stats.image_tokens_encoded // max(1, model.stats.image_encodes)
            rows.append((f"vlm tiny Qwen2-VL f16 [{tokens} image tokens]", len(refs), speed, ""))

        found = None if args.no_2b else find_2b()
        if found:
            pair, kind = found
            cfg = LlamaConfig(model=pair.text, mmproj=pair.mmproj, n_ctx=2048, n_threads=args.threads)
            with LlamaVisionModel(cfg) as model:
                emb = VLMEmbedder(model)
                emb.embed(warm)
                speed = rate(lambda rs: [emb.embed(r) for r in rs], refs[:N_PHOTOS_2B])
                tokens = model.stats.image_tokens_encoded // max(1, model.stats.image_encodes)
                rows.append((f"vlm 2B-shaped {kind} [{tokens} image tokens]", N_PHOTOS_2B, speed, "random weights"))
        elif not args.no_2b:
            print("no complete Qwen2-VL-2B-shaped model in the cache: 2B rows skipped", file=sys.stderr)

        if args.size == "b16":
            cold = not entry_dir(CACHE_NAME, tiny_clip_parts(CLIP_B16)).is_dir()
            t = time.perf_counter()
            b16 = tiny_clip(CLIP_B16)
            note = f"built in {time.perf_counter() - t:.0f} s" if cold else "cached"
            onnx_rows(f"onnx ViT-B/16 224px 512-d ({note})", b16)

    load = os.getloadavg()[0]
    width = max(len(r[0]) for r in rows)
    print(f"{args.threads} threads, {SIZE[0]}x{SIZE[1]} JPEGs, 1-min load average at the end {load:.1f}\n")
    print(f"{'embedder':<{width}}  {'photos':>6}  {'photos/s':>9}  ratio vs decode")
    for name, n, speed, note in rows:
        print(f"{name:<{width}}  {n:>6}  {speed:>9.3g}  {speed / base:>9.3g}  {note}")


if __name__ == "__main__":
    main()
