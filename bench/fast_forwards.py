"""Benchmark of `trainer.fast_vision` and the CPU attention kernel: the demo build's training steps with the
stock HF forwards against the fast ones, one process, the same model, photos and samples.

Run: `.venv/bin/python bench/fast_forwards.py` (CPU, two threads, about a minute). Options: `--reps N` (timed
passes of each variant after one warm-up), `--threads N`, `--precision build|f32|bf16` (the autocast: as the build
decides it on this CPU, or forced), `--compile` (stage B also with the fast model's language model compiled, as
`DemoConfig.compile` does; its warm-up pass compiles, a minute or two), `--length` (stage B also in 3 passes cut
by token count, as `DemoConfig.length_batches` does: `fast` so, and with `--compile` `compiled` so, i.e.
`rrg-train demo-model --fast`). Rows:
- stage A: the vision tower's forward and backward on 64 rendered photos with the attribute heads (the step's
  rendering, the same for every variant, is left out; `bench/stage_a.py` times whole steps);
- stage B: the whole model's forward and backward on one batch of 32 training samples (2 micro-batches).
Variants: `stock` (HF's Conv3d patch embedding and per-photo attention, torch's default SDPA kernel: what
built the shipped model) and `fast` (`speed_up_vision`, the forwards under `attention_kernel`, i.e. the math
SDPA kernel: what the build runs now on a CPU), and with `--compile` on stage B `compiled` (`fast` with
`torch.compile` on its language model). Each row also prints the difference of its loss from the
stock one, so a faster variant that computed something else would show. Ratios are seconds against the stock variant's.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=("build", "f32", "bf16"), default="build",
                    help="build: bf16 autocast where the build would use it (a CPU with bf16 instructions); f32 or "
                         "bf16: forced")  # fmt: skip
    ap.add_argument("--compile", action="store_true", help="stage B also with the language model compiled")
    ap.add_argument("--length", action="store_true", help="stage B also in 3 passes cut by token count")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForImageTextToText

    from trainer import demo_vision
    from trainer.demo_build import BuildConfig
    from trainer.demo_model import Encoder, draw_batch, init_model, micro_batches, uses_bf16
    from trainer.fast_vision import attention_kernel, speed_up_vision

    torch.set_num_threads(args.threads)
    config = BuildConfig().pretrain
    # As the build decides (`trainer.hardware.native_bf16`), unless forced.
    bf16 = uses_bf16(config) if args.precision == "build" else args.precision == "bf16"
    with tempfile.TemporaryDirectory() as tmp:
        init = init_model(config, Path(tmp))
        encoder = Encoder(init)
        stock = AutoModelForImageTextToText.from_pretrained(init, dtype=torch.float32)
    fast = copy.deepcopy(stock)
    changed = speed_up_vision(fast)
    photos = demo_vision.render_encoded(64, random.Random(1), config.photo_size, encoder.proc, 2, 0.3)
    samples = draw_batch(random.Random(2), config, config.steps // 2)
    chunks = [encoder(c, stock) for c in micro_batches(samples, config.micro_batches)]
    by_length = encoder.batches(samples, stock, 3)
    torch.manual_seed(0)
    width = stock.config.text_config.hidden_size
    sizes = demo_vision.HEADS | {"part": demo_vision.HEADS["part"] * len(demo_vision.CATEGORIES)}
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(width, n) for k, n in sizes.items()})
    scene = torch.nn.Linear(width, len(demo_vision.SCENES))

    def stage_a(model) -> float:
        losses, _ = demo_vision._losses(model.model.visual, heads, scene, photos, object_pool=True, bf16=bf16)
        loss = sum(losses.values())
        loss.backward()
        return float(loss.detach())

    def stage_b(model, passes=chunks) -> float:
        total = 0.0
        for batch in passes:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(**batch["inputs"]).logits[:, :-1]
            labels = batch["labels"][:, 1:]
            loss = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="sum")
            (loss / len(samples)).backward()
            total += float(loss.detach()) / len(samples)
        return total

    variants = [("stock", stock, chunks), ("fast", fast, chunks)]
    only_b = []
    if args.compile:
        compiled = copy.deepcopy(fast)
        compiled.model.language_model.compile(dynamic=True)
        only_b.append(("compiled", compiled, chunks))
    if args.length:
        only_b.append(("fast, by length", fast, by_length))
        only_b += [("compiled, by length", compiled, by_length)] if args.compile else []
    print(f"{changed} modules given fast forwards; {args.reps} timed passes each, {args.threads} threads, "
          f"bf16 autocast {bf16}")  # fmt: skip
    print("| step | variant | s / pass | ratio | loss - stock loss |\n|---|---|---|---|---|")
    for name, step in (("stage A (64 photos)", stage_a), ("stage B (32 samples)", stage_b)):
        base_time = base_loss = None
        for label, model, passes in variants + (only_b if step is stage_b else []):
            times, loss = [], 0.0
            for rep in range(args.reps + 1):
                model.zero_grad(set_to_none=True)
                heads.zero_grad(set_to_none=True)
                start = time.perf_counter()
                with attention_kernel(model):  # the stock model: torch's default kernel
                    loss = step(model) if step is stage_a else step(model, passes)
                if rep:
                    times.append(time.perf_counter() - start)
            took = statistics.median(times)
            base_time = base_time or took
            base_loss = loss if base_loss is None else base_loss
            print(f"| {name} | {label} | {took:.3f} | {took / base_time:.2f} | {loss - base_loss:+.1e} |")


if __name__ == "__main__":
    main()
