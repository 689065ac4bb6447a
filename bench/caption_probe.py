"""What does the demo model see? Its speaker's caption likelihood, own photo against look-alikes, photo by photo.

Run: `.venv/bin/python bench/caption_probe.py [--concepts 60]` on the shipped demo model through llama.cpp (the
base GGUF, the runtime's frozen listener; `--model-dir` for another shipped folder), or `--hf RUN/listener/hf`
on a demo-model build's HF folder (`rrg-train demo-model` leaves one per stage). For held-out concepts
(`trainer.demo_tasks.listener_probes`), the world's complete description of the concept is scored as the
speaker's answer (log P(description | photo), `trainer.demo_model.answer_logliks`) on a photo of the concept
and on one of each look-alike (one attribute changed), of another object of its category and of another
category, all of one concept's photos drawn from one seed (`paired_photos`: same scene, distractors, size and tilt).
Printed per kind: the mean log-likelihood margin of the own photo, how often the own photo wins its
pair, and the AUC over all photos. A kind near 0.5 is a difference the model does not see in the photo at all,
whatever its listener does: where `bench/listener_probe.py` is blind and this is not, the listener is the gap.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gguf_logliks(samples: list, model_dir: Path | None, threads: int) -> tuple[str, list[float]]:
    """The same scores through llama.cpp, token by token (each call decodes one more token of the answer)."""
    import tempfile

    import numpy as np

    from rrg_local.demo.run import MODEL_DIR, shipped_model
    from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel
    from rrg_local.vlm.protocol import Force, ImageRef, Message

    shipped = shipped_model(model_dir or MODEL_DIR)
    config = LlamaConfig(model=shipped.text, mmproj=shipped.mmproj, n_threads=threads,
                         image_max_tokens=shipped.image_max_tokens)  # fmt: skip
    scores = []
    with LlamaVisionModel(config) as model, tempfile.TemporaryDirectory() as tmp:
        for i, sample in enumerate(samples):
            path = Path(tmp) / f"{i:05d}.jpg"
            sample.image.save(path, "JPEG", quality=95)
            messages = [
                Message(m.role, tuple(ImageRef(path) if isinstance(p, ImageRef) else p for p in m.parts))
                for m in sample.messages
            ]
            tokens = [t for segment in sample.segments for t in model.tokenize(segment)] + [
                model.tokenize("<|im_end|>", special=True)[0]
            ]
            total = 0.0
            for k, token in enumerate(tokens):
                logits = model.run_logits(messages, [Force("", tokens=tuple(tokens[:k]))] if k else [])
                top = logits.max()
                total += float(logits[token] - top - np.log(np.exp(logits - top).sum()))
            scores.append(total)
    return shipped.text.name, scores


def main() -> int:
    from trainer.demo_model import answer_logliks, auc, open_hf
    from trainer.demo_tasks import caption_sample, listener_probes, paired_photos

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", type=Path, help="a demo-model build's HF folder (default: the shipped GGUF)")
    ap.add_argument("--model-dir", type=Path, help="a shipped demo model folder (default: the repo's)")
    ap.add_argument("--concepts", type=int, default=60)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    probes = listener_probes(random.Random(args.seed), args.concepts)
    photos = paired_photos(probes, args.seed, args.size)
    samples = [
        caption_sample(p.described.category, p.description, img) for p, (img, _) in zip(probes, photos, strict=True)
    ]
    if args.hf:
        try:
            model, encoder = open_hf(args.hf, args.threads)
        except ValueError as e:
            ap.error(str(e))
        scores = answer_logliks(model, encoder, samples, bf16=True)
        name = str(args.hf)
    else:
        name, scores = gguf_logliks(samples, args.model_dir, args.threads)

    own: list[float] = []
    margins: dict[str, list[float]] = defaultdict(list)
    values: dict[str, list[float]] = defaultdict(list)
    for probe, score in zip(probes, scores, strict=True):
        if probe.kind == "positive":
            own.append(score)
        else:
            margins[probe.kind].append(own[-1] - score)
            values[probe.kind].append(score)
    print(f"speaker: {name}, {args.concepts} held-out concepts, log P(description | own photo) "
          f"{sum(own) / len(own):.2f}")  # fmt: skip
    print(f"| {'photo shows':<22} | {'n':>4} | {'own photo margin':>16} | {'own photo wins':>14} | {'AUC':>5} |")
    print(f"|{'-' * 24}|{'-' * 6}|{'-' * 18}|{'-' * 16}|{'-' * 7}|")
    for kind in sorted(margins, key=lambda k: (not k.startswith("lookalike"), k)):
        m = margins[kind]
        wins = sum(x > 0 for x in m) / len(m)
        print(f"| {kind:<22} | {len(m):>4} | {sum(m) / len(m):>16.2f} | {wins:>14.3f} | "
              f"{auc(own, values[kind]):>5.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
