"""Which differences does the yes/no listener see? The demo model's P(Yes) by kind of negative, through llama.cpp.

Run: `.venv/bin/python bench/listener_probe.py [--concepts 60] [--model-dir DIR]`. For held-out concepts
(`trainer.demo_tasks.listener_probes`), the world's complete description is put to the shipped base model (the
frozen listener of `bench/rrg_effect.py`, as `rrg_local.vlm.tasks.recognize` asks it) with a photo of the
concept itself, of each look-alike (the same object, one attribute changed), of another object of its category
and of one of another category. Printed per kind: the mean P(Yes) and the AUC of positives against that kind
(0.5: the listener does not see that difference; 1.0: it always ranks the right photo higher).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from dataclasses import replace

    from rrg_local.demo.photo import render_photo
    from rrg_local.demo.run import MODEL_DIR, shipped_model
    from rrg_local.demo.scenes import SCENES
    from trainer.demo_model import auc
    from trainer.demo_tasks import listener_probes
    from trainer.eval import GGUFBackend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concepts", type=int, default=60)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    args = ap.parse_args()

    model = shipped_model(args.model_dir)
    rng = random.Random(args.seed)
    probes = listener_probes(rng, args.concepts)
    p_yes: dict[str, list[float]] = defaultdict(list)
    backend = GGUFBackend.open(model.text, model.mmproj, image_max_tokens=model.image_max_tokens)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, probe in enumerate(probes):
                img, _ = render_photo([probe.shown], rng.choice(SCENES), rng, args.size)
                path = Path(tmp) / f"{i:05d}.jpg"
                img.save(path, "JPEG", quality=90)
                text = replace(probe.description.text(), name="Bo", category=probe.described.category)
                p_yes[probe.kind].append(backend.p_yes(path, text))
    finally:
        backend.close()
    positives = p_yes.pop("positive")
    print(f"listener: {model.text.name}, {args.concepts} held-out concepts, P(Yes) on their own photos "
          f"{sum(positives) / len(positives):.3f}")  # fmt: skip
    print(f"| {'photo shows':<22} | {'n':>4} | {'mean P(Yes)':>11} | {'AUC vs own photo':>16} |")
    print(f"|{'-' * 24}|{'-' * 6}|{'-' * 13}|{'-' * 18}|")
    for kind in sorted(p_yes, key=lambda k: (not k.startswith("lookalike"), k)):
        values = p_yes[kind]
        print(f"| {kind:<22} | {len(values):>4} | {sum(values) / len(values):>11.3f} | "
              f"{auc(positives, values):>16.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
