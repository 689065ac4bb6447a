"""The demo's dedicated stage-1 embedder: a small CNN trained on the demo world, exported to ONNX.

Stage 1 of tagging ranks photos by embedding similarity to a concept's own photos; a real install uses a
CLIP/SigLIP tower (`trainer.tiny_clip`), which no machine here can download. The demo model's own vision
tower, a 3-layer ViT trained from scratch, learns the world slowly on 2 cores (after 64k photos: colour
0.66, pattern 0.47 on its training batches), and nearest neighbours in it held the same object only half
the time. A CNN's inductive bias learns the same attributes from the same photos in minutes: this one is
trained (`train_embedder`) to name the attributes of the photo's main object (category, colour, secondary
colour, pattern, category-specific part, mark) from an attention-pooled feature map, and what it exports
is the concatenation of those six softmax distributions: two photos are close exactly when they agree on
every attribute, so a look-alike (one attribute apart) lands about a sixth of the way off. Concepts held
out from training (`trainer.demo_tasks.held_out`) measure it (`held_acc_*`).

`build(config, out)` trains, exports `model.onnx` + `embedder.json` (an `OnnxEmbedder` folder, checked
against torch) and writes `manifest.json` (config, held-out accuracies, timing, versions, hashes);
`ship(out)` copies the folder to `rrg_local/demo/embedder`, which `rrg demo` uses. Seeded and
deterministic: `rrg-train demo-embedder --out DIR --ship`.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rrg_local.concepts.onnx_embedder import MODEL_FILE, SPEC_FILE, EmbedderSpec
from rrg_local.demo.attributes import CATEGORIES, COLOURS, MARKS, PARTS, PATTERNS
from rrg_local.vlm.gguf_meta import file_sha256

SHIPPED = Path(__file__).resolve().parent.parent / "rrg_local" / "demo" / "embedder"
MANIFEST = "manifest.json"
# One softmax per head; "part" is the category's part variant (3 per category), so 18 classes.
HEADS = {
    "category": len(CATEGORIES),
    "colour": len(COLOURS),
    "secondary": len(COLOURS),
    "pattern": len(PATTERNS),
    "part": 3 * len(CATEGORIES),
    "mark": len(MARKS),
}
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class EmbedderConfig:
    seed: int = 0
    photos: int = 16000  # rendered once (training-split concepts), drawn in random batches
    held_out: int = 600  # photos of held-out concepts, measured every `log_every` steps
    steps: int = 1750
    batch: int = 64
    lr: float = 2e-3  # linear decay to 5% of it
    weight_decay: float = 1e-4
    size: int = 112  # input side; the world's photos are 224 px
    widths: tuple[int, int, int] = (32, 64, 128)
    pools: int = 4  # attention maps side by side (1 map: held-out part 0.75, not 0.78; demo recall 0.79, not 0.83)
    threads: int = 2
    log_every: int = 250


def targets(concept) -> list[int]:
    """The class index of each head (`HEADS` order) for one concept.

    >>> from rrg_local.demo.attributes import Concept
    >>> targets(Concept("ball", "red", "blue", "dots", "cross", "moon"))
    [2, 0, 4, 2, 7, 2]
    """
    category = CATEGORIES.index(concept.category)
    return [
        category,
        list(COLOURS).index(concept.colour),
        list(COLOURS).index(concept.secondary),
        PATTERNS.index(concept.pattern),
        3 * category + PARTS[concept.category][1].index(concept.part),
        MARKS.index(concept.mark),
    ]


def render(n: int, seed: int, *, evaluation: bool, size: int):
    """`n` world photos of one concept each (with the world's distractors, occluders, light and JPEG), as
    uint8 (n, 3, size, size) and their targets (n, 6)."""
    import numpy as np
    import torch
    from PIL import Image

    from trainer.demo_tasks import _photo, draw_concept

    rng = random.Random(seed)
    pixels = np.zeros((n, 3, size, size), np.uint8)
    labels = np.zeros((n, len(HEADS)), np.int64)
    for i in range(n):
        concept = draw_concept(rng, evaluation=evaluation)
        img, _ = _photo(rng, [concept], 224)
        pixels[i] = np.asarray(img.resize((size, size), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
        labels[i] = targets(concept)
    return torch.from_numpy(pixels), torch.from_numpy(labels)


def build_net(config: EmbedderConfig):
    """The CNN: a strided stem, three conv stages, attention pooling, one linear head per attribute.
    `net(x)` returns the heads' logits; `net.embed(x)` their softmaxes concatenated (what is exported)."""
    import torch
    from torch import nn

    def conv(i: int, o: int, k: int = 3, stride: int = 1) -> list:
        return [nn.Conv2d(i, o, k, stride, k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    a, b, c = config.widths

    class AttributeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                *conv(3, a, 5, 2), *conv(a, a), nn.MaxPool2d(2),
                *conv(a, b), *conv(b, b), nn.MaxPool2d(2),
                *conv(b, c), *conv(c, c),
            )  # fmt: skip
            self.attend = nn.Conv2d(c, config.pools, 1)
            self.heads = nn.ModuleList([nn.Linear(c * config.pools, n) for n in HEADS.values()])

        def pooled(self, x):
            h = self.features(x)
            weights = self.attend(h).flatten(2).softmax(-1)  # (N, pools, HW)
            return torch.matmul(weights, h.flatten(2).transpose(1, 2)).flatten(1)  # (N, pools * C)

        def forward(self, x):
            g = self.pooled(x)
            return [head(g) for head in self.heads]

        def embed(self, x):
            return torch.cat([logits.softmax(-1) for logits in self(x)], dim=-1)

    return AttributeNet()


def exportable(net):
    """`net.embed` as a module's forward (pixel_values -> image_embeds), in eval mode, for export."""
    from torch import nn

    class Embed(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, pixel_values):
            return self.net.embed(pixel_values)

    return Embed().eval()


def normalise(pixels):
    """uint8 NCHW -> the network's input: the `EmbedderSpec` mean and std (what `OnnxEmbedder` feeds it)."""
    return (pixels.float() / 255.0 - MEAN[0]) / STD[0]


def accuracies(net, pixels, labels, batch: int = 200) -> dict[str, float]:
    import torch

    net.eval()
    right = torch.zeros(len(HEADS))
    with torch.no_grad():
        for i in range(0, len(pixels), batch):
            logits = net(normalise(pixels[i : i + batch]))
            right += torch.stack([(o.argmax(-1) == labels[i : i + batch, k]).sum() for k, o in enumerate(logits)])
    net.train()
    return {k: round(float(v) / max(1, len(pixels)), 4) for k, v in zip(HEADS, right, strict=True)}


def train_embedder(config: EmbedderConfig, run_dir: Path, log: Any = print):
    """Train the CNN (seeded); writes `metrics.jsonl` in `run_dir` and returns (net, final held-out accuracies)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(config.threads)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    train_x, train_y = render(config.photos, config.seed + 1, evaluation=False, size=config.size)
    held_x, held_y = render(config.held_out, config.seed + 2, evaluation=True, size=config.size)
    log(f"demo embedder: {config.photos} + {config.held_out} photos rendered in {time.monotonic() - start:.0f} s")
    torch.manual_seed(config.seed)
    net = build_net(config)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    metrics = run_dir / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    held: dict[str, float] = {}
    start = time.monotonic()
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = config.lr * max(0.05, 1 - step / config.steps)
        idx = torch.randint(0, len(train_x), (config.batch,), generator=gen)
        x, y = normalise(train_x[idx]), train_y[idx]
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(-1)  # no attribute is left or right
        logits = net(x)
        loss = sum(F.cross_entropy(o, y[:, k]) for k, o in enumerate(logits))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = step + 1 == config.steps
        if (step + 1) % config.log_every == 0 or last:
            held = accuracies(net, held_x, held_y)
            row = {"step": step + 1, "loss": round(float(loss.detach()), 4), "s": round(time.monotonic() - start, 1)}
            row |= {f"held_acc_{k}": v for k, v in held.items()}
            with metrics.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            log(json.dumps(row))
    return net.eval(), held


def plot_curves(run_dir: Path) -> Path | None:
    """`curves.png`: the heads' accuracy on held-out concepts per step (when matplotlib is installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in HEADS:
        ax.plot([r["step"] for r in rows], [r[f"held_acc_{key}"] for r in rows], label=key, marker=".")
    ax.set_title("demo embedder: held-out concepts")
    ax.set_xlabel("step")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def export(net, config: EmbedderConfig, dest: Path) -> EmbedderSpec:
    """`model.onnx` + `embedder.json` in the existing folder `dest`, checked against torch."""
    from trainer.tiny_clip import export_checked

    spec = EmbedderSpec(
        image_size=config.size,
        embedding_dim=sum(HEADS.values()),
        mean=MEAN,
        std=STD,
        resample="bicubic",
        crop="squash",
        family="demo-cnn",
        source="demo-world attribute CNN (trainer.demo_embedder)",
    )
    export_checked(exportable(net), spec, dest, what="the demo embedder")
    return spec


def build(config: EmbedderConfig, out: Path, log: Any = print) -> dict:
    """Train, export into `out/embedder/` and write its manifest; returns the manifest."""
    from trainer.cache import toolchain_versions

    out = Path(out)
    start = time.monotonic()
    net, held = train_embedder(config, out, log)
    train_s = round(time.monotonic() - start, 1)
    plot_curves(out)
    dest = out / "embedder"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    export(net, config, dest)
    manifest = {
        "name": "rrg-demo-embedder",
        "about": "A small CNN trained on the demo world to name the main object's attributes; its embedding is "
        "the six attribute distributions. Built by `rrg-train demo-embedder`. It knows only the demo world.",
        "config": json.loads(json.dumps(asdict(config))),
        "held_out_accuracy": held,
        "train_s": train_s,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": toolchain_versions(),
        "files": {
            name: {"bytes": (dest / name).stat().st_size, "sha256": file_sha256(dest / name)}
            for name in (MODEL_FILE, SPEC_FILE)
        },
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def ship(out: Path, dest: Path = SHIPPED) -> Path:
    """Copy a built embedder folder (`out/embedder`) into the package; returns the destination."""
    src = Path(out) / "embedder"
    dest.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, SPEC_FILE, MANIFEST):
        shutil.copyfile(src / name, dest / name)
    return dest
