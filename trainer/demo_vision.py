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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrg_local.demo.attributes import CATEGORIES, COLOURS, MARKS, PARTS, PATTERNS
from rrg_local.demo.photo import PhotoTruth
from rrg_local.demo.scenes import SCENES

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


def train_vision(model: Any, proc: Any, config: VisionConfig, *, seed: int, photo_size: int, bf16: bool,
                 run_dir: Path, log: Any = print) -> dict:  # fmt: skip
    """Train `model.model.visual` (in place) with attribute heads; returns the tower's state dict."""
    import torch
    import torch.nn.functional as F

    visual = model.model.visual
    width = model.config.text_config.hidden_size
    torch.manual_seed(seed)  # the heads' init: the same stage A whatever ran before in this process
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(width, n) for k, n in HEADS.items()})
    scene_head = torch.nn.Linear(width, len(SCENES))
    params = [*visual.parameters(), *heads.parameters(), *scene_head.parameters()]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    rng = random.Random(seed + 77)
    merge = visual.spatial_merge_size
    metrics = Path(run_dir) / "vision_metrics.jsonl"
    start = time.monotonic()
    visual.train()
    for step in range(config.steps):
        photos = [_render(rng, photo_size) for _ in range(config.batch)]
        px = proc(images=[p[0] for p in photos], return_tensors="pt")
        grids = [(int(g[1]) // merge, int(g[2]) // merge) for g in px["image_grid_thw"]]
        targets: dict[str, list[int]] = {k: [] for k in HEADS}
        pooled_rows, pooled_targets = [], {k: [] for k in HEADS if k != "category"}
        offset = 0
        for (_, truth), grid in zip(photos, grids, strict=True):
            per_token = token_targets(truth, grid, config.coverage)
            for k, v in per_token.items():
                targets[k] += v
            if config.object_pool:
                for i, weights in object_weights(truth, grid):
                    pooled_rows.append((offset, torch.tensor(weights)))
                    obj = truth.objects[i].concept
                    one = token_targets_for(obj)
                    for k in pooled_targets:
                        pooled_targets[k].append(one[k])
            offset += grid[0] * grid[1]
        scenes = torch.tensor([SCENES.index(t.scene) for _, t in photos])
        lr = config.lr * min(1.0, (step + 1) / config.warmup) * (0.1 + 0.9 * (1 - step / config.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            tokens = visual(px["pixel_values"], grid_thw=px["image_grid_thw"]).pooler_output
        tokens = tokens.float()
        losses, accs = {}, {}
        if config.object_pool and pooled_rows:
            pooled = torch.stack([(tokens[o : o + len(wt)] * wt[:, None]).sum(0) / wt.sum() for o, wt in pooled_rows])
        for k, head in heads.items():
            if config.object_pool and k != "category":
                if not pooled_rows:
                    continue
                y, logits = torch.tensor(pooled_targets[k]), head(pooled)
            else:
                y, logits = torch.tensor(targets[k]), head(tokens)
            losses[k] = F.cross_entropy(logits, y, ignore_index=IGNORE)
            mask = y != IGNORE
            accs[k] = float((logits.argmax(-1)[mask] == y[mask]).float().mean()) if mask.any() else float("nan")
        per_image = torch.stack([t.mean(0) for t in torch.split(tokens, [r * c for r, c in grids])])
        scene_logits = scene_head(per_image)
        losses["scene"] = F.cross_entropy(scene_logits, scenes)
        accs["scene"] = float((scene_logits.argmax(-1) == scenes).float().mean())
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        speed = round((step + 1) * config.batch / (time.monotonic() - start), 1)
        row = {"step": step + 1, "loss": round(float(loss.detach()), 4), "images_per_s": speed}
        row |= {f"acc_{k}": round(v, 3) for k, v in accs.items()}
        with metrics.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if (step + 1) % config.log_every == 0:
            log(json.dumps(row))
    return {k: v.detach().clone() for k, v in visual.state_dict().items()}
