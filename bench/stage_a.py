"""Benchmark of the demo model's stage A (the vision tower alone): seconds per step with the photos rendered
in the training process (`workers` 0) against rendered by worker processes while the tower trains.

Run: `.venv/bin/python bench/stage_a.py` (the shipped build's shape and stage A settings, two threads, about
three minutes). Options: `--steps N` (timed steps per variant; each run uses that schedule), `--workers 0 1 2`
(the variants), `--threads N` (the training process's torch threads), `--stock` (first, a variant with the
stock HF forwards, rendering in the training process: the baseline of `trainer.fast_vision`), `--device
cuda` (on a GPU machine: `--workers 0 8 15` there shows whether rendering or the device bounds a step).
Every variant starts from the same seeded model; those with workers draw the same photos whatever their
number, so the table also says whether their towers came out bit for bit equal (they must). Ratios are
against the first variant; the steady columns leave out the first fifth of the steps (the workers' start).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stock", action="store_true")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForImageTextToText

    from trainer.demo_build import BuildConfig
    from trainer.demo_model import Encoder, init_model
    from trainer.demo_vision import train_vision

    config = BuildConfig().pretrain
    torch.set_num_threads(args.threads)
    rows, states = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        init = init_model(config, Path(tmp))
        proc = Encoder(init).proc
        for fast, workers in [(False, 0)] * args.stock + [(True, w) for w in args.workers]:
            vision = replace(config.vision, steps=args.steps, held_out=0, bank=0, log_every=10**9, workers=workers)
            model = AutoModelForImageTextToText.from_pretrained(init, dtype=torch.float32).to(args.device)
            run = Path(tmp) / f"workers-{workers}-{fast}"
            run.mkdir()
            start = time.perf_counter()
            state = train_vision(model, proc, vision, seed=config.seed, photo_size=config.photo_size,
                                 bf16=config.bf16, run_dir=run, log=lambda _: None, fast=fast)  # fmt: skip
            if fast:
                states[workers] = state
            total = time.perf_counter() - start
            done = [json.loads(line) for line in (run / "vision_metrics.jsonl").read_text().splitlines()]
            at = [row["step"] * vision.batch / row["images_per_s"] for row in done]  # seconds since step 1 began
            warm = max(1, len(at) // 5)  # steady: after the first fifth of the steps (the workers' start)
            steady = (at[-1] - at[warm - 1]) / (len(at) - warm) if len(at) > warm else total / args.steps
            rows.append((workers, fast, total / args.steps, steady))
    base, base_steady = rows[0][2], rows[0][3]
    print(f"stage A, {args.steps} steps x {config.vision.batch} photos at {config.photo_size} px, "
          f"device {args.device}, {args.threads} training threads")  # fmt: skip
    print("| rendered by | s / step | ratio | steady s / step | ratio | photos / s | 10,000 steps |")
    print("|---|---|---|---|---|---|---|")
    for workers, fast, per_step, steady in rows:
        who = f"{workers} worker process{'es' if workers > 1 else ''}" if workers else "the training process"
        who += "" if fast else ", stock HF forwards"
        print(f"| {who} | {per_step:.3f} | {per_step / base:.2f} | {steady:.3f} | {steady / base_steady:.2f} "
              f"| {config.vision.batch / per_step:.0f} | {per_step * 10_000 / 60:.0f} min |")  # fmt: skip
    with_workers = [states[w] for w in args.workers if w]
    if len(with_workers) > 1:
        same = all(torch.equal(s[k], with_workers[0][k]) for s in with_workers[1:] for k in s)
        print(f"towers with workers bit for bit equal: {same}")


if __name__ == "__main__":
    main()
