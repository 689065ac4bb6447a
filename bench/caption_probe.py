"""What does the demo model see? Its speaker's caption likelihood, own photo against look-alikes, photo by photo.

Run: `.venv/bin/python bench/caption_probe.py --hf RUN/listener/hf [--concepts 60]` on a demo-model build's HF
folder (`rrg-train demo-model` leaves one per stage: `pretrain/hf`, `listener/hf`). For held-out concepts
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


def main() -> int:
    from trainer.demo_model import answer_logliks, auc, open_hf
    from trainer.demo_tasks import caption_sample, listener_probes, paired_photos

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", type=Path, required=True, help="a demo-model build's HF folder")
    ap.add_argument("--concepts", type=int, default=60)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    try:
        model, encoder = open_hf(args.hf, args.threads)
    except ValueError as e:
        ap.error(str(e))
    probes = listener_probes(random.Random(args.seed), args.concepts)
    photos = paired_photos(probes, args.seed, args.size)
    samples = [
        caption_sample(p.described.category, p.description, img) for p, (img, _) in zip(probes, photos, strict=True)
    ]
    scores = answer_logliks(model, encoder, samples, bf16=True)

    own: list[float] = []
    margins: dict[str, list[float]] = defaultdict(list)
    values: dict[str, list[float]] = defaultdict(list)
    for probe, score in zip(probes, scores, strict=True):
        if probe.kind == "positive":
            own.append(score)
        else:
            margins[probe.kind].append(own[-1] - score)
            values[probe.kind].append(score)
    print(f"speaker: {args.hf}, {args.concepts} held-out concepts, log P(description | own photo) "
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
