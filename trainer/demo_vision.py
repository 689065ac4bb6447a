"""Stage A of the demo model: teach its vision tower the world's attributes directly, before any language.

Learning what a red striped mug looks like only through caption tokens behind 200-token prompts is slow on
CPU (a first run had colour and category still at chance after 13k samples). Here the Qwen2-VL vision tower
and its merger (whose outputs are the language model's image tokens) train alone on rendered photos, with
dense supervision: every image token predicts the attributes of the object covering its cell (category,
colour, secondary colour, pattern, part, mark; "background" where no object covers it, distractors
included), and the tokens' mean predicts the scene. Linear heads are thrown away afterwards; the tower keeps
features in which attributes are linearly readable and localised, which the language stage then learns to
name and compare. `train_vision` returns the tower's state dict and writes `vision_metrics.jsonl`.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rrg_local.demo.attributes import CATEGORIES, COLOURS, MARKS, PARTS, PATTERNS
from rrg_local.demo.photo import PhotoTruth
from rrg_local.demo.scenes import SCENES
from trainer.fast_vision import attention_kernel, speed_up_vision
from trainer.prefetch import Prefetcher

HEADS = {
    "category": len(CATEGORIES) + 1,  # + background
    "colour": len(COLOURS),
    "secondary": len(COLOURS),
    "pattern": len(PATTERNS),
    "part": 3,
    "mark": len(MARKS),
}
IGNORE = -100


@dataclass(frozen=True)
class VisionConfig:
    steps: int = 600
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 30
    coverage: float = 0.3  # a token belongs to the object covering at least this share of its cell
    log_every: int = 50
    # Attribute heads on each object's tokens pooled (coverage-weighted): one clean label per object instead
    # of a noisy one per token (a token at an object's edge rarely shows its mark). Category stays per token.
    object_pool: bool = True
    bank: int = 0  # render this many photos once and train on them in epochs; 0: a fresh batch every step
    held_out: int = 0  # fresh photos the heads are measured on every `log_every` steps (never trained on)
    # The part head names (category, part) pairs, 18 classes, instead of the part's index in its category (3
    # classes that mean a handle on a mug and a band on a ball); its accuracy is still read within the category.
    part_by_category: bool = False
    # 0: fresh batches rendered here from one random stream (the shipped build's photos). N >= 1: batch k drawn
    # from its own seed (`batch_rng`) by N worker processes (`trainer.prefetch`): other photos than 0's, the
    # same for every N. Worth it where cores are many and the tower trains on a GPU; on two cores it is not.
    workers: int = 0
    # torch threads while the tower trains (0: the caller's, as in stage B). With rendering workers on two cores,
    # 1 (`bench/stage_a.py`: 0.484 s a step with 1 thread and 2 workers, 0.672 with 2 threads and none).
    threads: int = 0


def token_targets(truth: PhotoTruth, grid: tuple[int, int], coverage: float) -> dict[str, list[int]]:
    """Per image token (row-major over `grid` = (rows, cols) of merged tokens): each head's class index.

    >>> from rrg_local.demo.attributes import Concept
    >>> from rrg_local.demo.photo import PlacedObject
    >>> mug = Concept("mug", "red", "blue", "stripes", "square", "star")
    >>> t = PhotoTruth("beach", (100, 100), (PlacedObject(mug, (0, 0, 50, 50), False, 0.5, 0.0, 0.0),), 1, (1,1,1), 90)
    >>> token_targets(t, (2, 2), 0.3)["category"]
    [0, 6, 6, 6]
    """
    covers = [cell_coverage(obj.box, truth.size, grid) for obj in truth.objects]
    out: dict[str, list[int]] = {k: [] for k in HEADS}
    for token in range(grid[0] * grid[1]):
        best, best_cover = None, coverage
        for obj, cover in zip(truth.objects, covers, strict=True):  # later objects are drawn over earlier ones
            if cover[token] >= best_cover:
                best, best_cover = obj.concept, cover[token]
        if best is None:
            out["category"].append(len(CATEGORIES))
            for k in ("colour", "secondary", "pattern", "part", "mark"):
                out[k].append(IGNORE)
            continue
        out["category"].append(CATEGORIES.index(best.category))
        for k, v in token_targets_for(best).items():
            out[k].append(v)
    return out


def cell_coverage(box: tuple[int, int, int, int], size: tuple[int, int], grid: tuple[int, int]) -> list[float]:
    """Per image token (row-major over `grid`): the share of its cell that `box` covers.

    >>> cell_coverage((0, 0, 50, 25), (100, 100), (2, 2))
    [0.5, 0.0, 0.0, 0.0]
    """
    rows, cols = grid
    w, h = size
    x0, y0, x1, y1 = box
    out = []
    for r in range(rows):
        for c in range(cols):
            cell = (c * w / cols, r * h / rows, (c + 1) * w / cols, (r + 1) * h / rows)
            area = (cell[2] - cell[0]) * (cell[3] - cell[1])
            inter = max(0.0, min(x1, cell[2]) - max(x0, cell[0])) * max(0.0, min(y1, cell[3]) - max(y0, cell[1]))
            out.append(inter / area)
    return out


def token_targets_for(concept) -> dict[str, int]:
    """One object's class index per attribute head."""
    return {
        "colour": list(COLOURS).index(concept.colour),
        "secondary": list(COLOURS).index(concept.secondary),
        "pattern": PATTERNS.index(concept.pattern),
        "part": PARTS[concept.category][1].index(concept.part),
        "mark": MARKS.index(concept.mark),
    }


def object_targets(concept) -> dict[str, int]:
    """`token_targets_for` and the category: what an object's pooled tokens are trained on."""
    return token_targets_for(concept) | {"category": CATEGORIES.index(concept.category)}


def object_weights(truth: PhotoTruth, grid: tuple[int, int]) -> list[tuple[int, list[float]]]:
    """Per object in `truth` whose box covers some token: (object index, each token's covered share)."""
    out = []
    for i, obj in enumerate(truth.objects):
        weights = cell_coverage(obj.box, truth.size, grid)
        if sum(weights) > 0:
            out.append((i, weights))
    return out


def _render(rng: random.Random, size: int):
    from trainer.demo_tasks import _photo, draw_concept

    n = rng.choice((1, 1, 1, 2))
    concepts = [draw_concept(rng, evaluation=False) for _ in range(n)]
    return _photo(rng, concepts, size)


@dataclass
class _Photo:
    """One rendered photo, ready for the tower: its patches (bf16) and every head's targets."""

    pixels: Any
    thw: Any
    tokens: dict[str, list[int]]  # per-token targets (`token_targets`)
    objects: list[tuple[list[float], dict[str, int]]]  # per object: token weights, attribute targets
    scene: int


def encode_photos(photos: list, proc: Any, merge: int, coverage: float, *, compact: bool = False) -> list[_Photo]:
    """Rendered (image, truth) pairs -> `_Photo`s (the processor runs once per call); `compact` keeps the
    patches in bf16 (a bank of 12k photos: 1.8 GB instead of 3.6)."""
    import torch

    px = proc(images=[p[0] for p in photos], return_tensors="pt")
    out, offset = [], 0
    for (_, truth), thw in zip(photos, px["image_grid_thw"], strict=True):
        n = int(thw.prod())
        grid = (int(thw[1]) // merge, int(thw[2]) // merge)
        objects = [(w, object_targets(truth.objects[i].concept)) for i, w in object_weights(truth, grid)]
        pixels = px["pixel_values"][offset : offset + n]
        pixels = pixels.to(torch.bfloat16) if compact else pixels
        out.append(_Photo(pixels, thw, token_targets(truth, grid, coverage), objects, SCENES.index(truth.scene)))
        offset += n
    return out


def within_category(logits: Any, category: Any) -> Any:
    """(N, categories x 3) part logits -> each row's 3 logits for its own category.

    >>> import torch
    >>> within_category(torch.arange(36.0).view(2, 18), torch.tensor([0, 5])).tolist()
    [[0.0, 1.0, 2.0], [33.0, 34.0, 35.0]]
    """
    import torch

    return logits.view(len(logits), -1, HEADS["part"])[torch.arange(len(logits), device=logits.device), category]


def _losses(visual: Any, heads: Any, scene_head: Any, photos: list[_Photo], *, object_pool: bool, bf16: bool):
    """Every head's loss and accuracy on a batch of `_Photo`s."""
    import torch
    import torch.nn.functional as F

    merge = visual.spatial_merge_size
    dev = next(visual.parameters()).device

    def tensor(values: Any) -> Any:
        return torch.tensor(values, device=dev)

    thw = torch.stack([p.thw for p in photos]).to(dev)
    with attention_kernel(visual), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        tokens = visual(torch.cat([p.pixels for p in photos]).to(dev).float(), grid_thw=thw).pooler_output
    tokens = tokens.float()
    sizes = [int(p.thw.prod()) // merge**2 for p in photos]
    losses, accs = {}, {}

    def add(key: str, logits: Any, y: Any) -> None:
        losses[key] = F.cross_entropy(logits, y, ignore_index=IGNORE)
        mask = y != IGNORE
        accs[key] = float((logits.argmax(-1)[mask] == y[mask]).float().mean()) if mask.any() else float("nan")

    # The graph is built in this order (slices of `tokens`, one stack, the heads, then the scene) so that
    # gradients add up in the same order as the shipped model's build: its stage A is reproduced bit for bit
    # (with `fast=False`; the fast forwards sum in another order).
    rows, pooled_y, offset = [], {k: [] for k in HEADS}, 0
    for p, size in zip(photos, sizes, strict=True):
        for weights, targets in p.objects:
            rows.append((offset, tensor(weights)))
            for k in pooled_y:
                pooled_y[k].append(targets[k])
        offset += size
    if object_pool and rows:
        pooled = torch.stack([(tokens[o : o + len(w)] * w[:, None]).sum(0) / w.sum() for o, w in rows])
    for k, head in heads.items():
        if k == "part" and head.out_features > HEADS["part"] and rows:  # (category, part) pairs
            category, part = tensor(pooled_y["category"]), tensor(pooled_y["part"])
            logits = head(pooled)
            losses[k] = F.cross_entropy(logits, HEADS["part"] * category + part)
            accs[k] = float((within_category(logits, category).argmax(-1) == part).float().mean())
        elif object_pool and k != "category":
            if rows:
                add(k, head(pooled), tensor(pooled_y[k]))
        else:
            add(k, head(tokens), tensor([v for p in photos for v in p.tokens[k]]))
    per_image = torch.stack([t.mean(0) for t in torch.split(tokens, sizes)])
    add("scene", scene_head(per_image), tensor([p.scene for p in photos]))
    return losses, accs


def render_encoded(n: int, rng: random.Random, photo_size: int, proc: Any, merge: int, coverage: float, *,
                   compact: bool = False) -> list[_Photo]:  # fmt: skip
    """`n` fresh photos from `rng`, rendered and encoded (the processor runs once per 256)."""
    out: list[_Photo] = []
    for i in range(0, n, 256):
        photos = [_render(rng, photo_size) for _ in range(min(256, n - i))]
        out += encode_photos(photos, proc, merge, coverage, compact=compact)
    return out


def batch_rng(seed: int, k: int) -> random.Random:
    """The random stream of stage A's batch `k` with `workers`: its own, so any worker can draw it.

    >>> batch_rng(0, 3).random() == batch_rng(0, 3).random() != batch_rng(0, 4).random()
    True
    """
    return random.Random(f"stage-a:{seed}:{k}")


def fresh_batches(seed: int, steps: int, batch: int, photo_size: int, proc: Any, merge: int, coverage: float, *,
                  start: int = 0, stride: int = 1):  # fmt: skip
    """Stage A's batches `start, start + stride, ...` below `steps`, each from `batch_rng`, as lists of `to_wire`
    photos: what a `Prefetcher` worker makes (one thread; numpy arrays pickle without shared memory)."""
    import torch

    torch.set_num_threads(1)
    for k in range(start, steps, stride):
        photos = render_encoded(batch, batch_rng(seed, k), photo_size, proc, merge, coverage)
        yield [to_wire(p) for p in photos]


def to_wire(photo: _Photo) -> _Photo:
    """`photo` with numpy arrays for tensors (bit for bit), to cross a process boundary; `from_wire` undoes it."""
    return replace(photo, pixels=photo.pixels.numpy(), thw=photo.thw.numpy())


def from_wire(photo: _Photo) -> _Photo:
    import torch

    return replace(photo, pixels=torch.from_numpy(photo.pixels), thw=torch.from_numpy(photo.thw))


def train_vision(model: Any, proc: Any, config: VisionConfig, *, seed: int, photo_size: int, bf16: bool,
                 run_dir: Path, log: Any = print, fast: bool = True) -> dict:  # fmt: skip
    """Train `model.model.visual` (in place) with attribute heads; returns the tower's state dict.

    With `config.bank`, that many photos are rendered once and batches are drawn from them epoch by epoch
    (rendering costs more than the tower's step); without, every batch is freshly rendered, here or, with
    `config.workers`, by worker processes while the tower trains. The tower trains where `model` is (CPU or
    GPU), with `trainer.fast_vision`'s forwards unless `fast` is false; the state dict comes back on the CPU.
    Every `log_every` steps the heads are also measured on `config.held_out` fresh photos, never trained on
    (`held_acc_*`).
    """
    import torch

    if fast:
        speed_up_vision(model)
    visual = model.model.visual
    width = model.config.text_config.hidden_size
    torch.manual_seed(seed)  # the heads' init: the same stage A whatever ran before in this process
    if config.part_by_category and not config.object_pool:
        raise ValueError("part_by_category needs object_pool")
    sizes = HEADS | ({"part": HEADS["part"] * len(CATEGORIES)} if config.part_by_category else {})
    dev = next(visual.parameters()).device
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(width, n) for k, n in sizes.items()}).to(dev)
    scene_head = torch.nn.Linear(width, len(SCENES)).to(dev)
    params = [*visual.parameters(), *heads.parameters(), *scene_head.parameters()]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    rng = random.Random(seed + 77)
    merge = visual.spatial_merge_size

    def render(n: int, source: random.Random, compact: bool = False) -> list[_Photo]:
        return render_encoded(n, source, photo_size, proc, merge, config.coverage, compact=compact)

    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    fresh = None  # workers start first: they render batches while the held-out photos render here
    if config.workers and not config.bank and config.steps:
        args = (seed, config.steps, config.batch, photo_size, proc, merge, config.coverage)
        fresh = Prefetcher(fresh_batches, *args, workers=config.workers)
    try:
        start = time.monotonic()
        held = render(config.held_out, random.Random(seed + 991)) if config.held_out else []
        bank = render(config.bank, rng, compact=True) if config.bank else []
        if bank:
            log(f"stage A: {len(bank)} photos rendered in {time.monotonic() - start:.0f} s")
        order: list[int] = []
        metrics = Path(run_dir) / "vision_metrics.jsonl"
        start = time.monotonic()
        for step in range(config.steps):
            visual.train()
            if bank:
                if len(order) < config.batch:
                    order += rng.sample(range(len(bank)), len(bank))
                batch, order = [bank[i] for i in order[: config.batch]], order[config.batch :]
            else:
                batch = [from_wire(p) for p in next(fresh)] if fresh else render(config.batch, rng)
            lr = config.lr * min(1.0, (step + 1) / config.warmup) * (0.1 + 0.9 * (1 - step / config.steps))
            for g in opt.param_groups:
                g["lr"] = lr
            losses, accs = _losses(visual, heads, scene_head, batch, object_pool=config.object_pool, bf16=bf16)
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            speed = round((step + 1) * config.batch / (time.monotonic() - start), 1)
            row = {"step": step + 1, "loss": round(float(loss.detach()), 4), "images_per_s": speed}
            row |= {f"acc_{k}": round(v, 3) for k, v in accs.items()}
            if held and ((step + 1) % config.log_every == 0 or step + 1 == config.steps):
                visual.eval()
                with torch.no_grad():
                    parts = [_losses(visual, heads, scene_head, held[i : i + 128], object_pool=config.object_pool,
                                     bf16=bf16)[1] for i in range(0, len(held), 128)]  # fmt: skip
                row |= {f"held_acc_{k}": round(sum(p[k] for p in parts) / len(parts), 3) for k in parts[0]}
            with metrics.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            if (step + 1) % config.log_every == 0:
                log(json.dumps(row))
    finally:
        torch.set_num_threads(threads_before)
        if fresh is not None:
            fresh.close()
    return {k: v.detach().cpu().clone() for k, v in visual.state_dict().items()}
