"""Does RRG training help? The untrained vs the RRG-trained speaker of the demo model, one frozen listener.

Run: `.venv/bin/python bench/rrg_effect.py [--concepts 96 --photos 3 --k 3]`. It writes a benchmark of demo-world
concepts held out from every training stage (`trainer.demo_tasks.held_out`: the pre-training never drew
them, the RRG stage's benchmark excludes them), in look-alike groups (same category, one attribute apart).
Each speaker describes every concept from its first photo; the same listener, the shipped base model
through llama.cpp, then scores every photo against every description. Printed side by side:
recognition accuracy on positives / negatives / their mean, identification among K (the target photo's
concept against the K-1 most similar other concepts, look-alikes first), the listener's caption naming
the right concept, and the share of descriptions that mention scene, position or pose; then identification
in the same games by a listener that picks the candidate whose description the photo explains best (caption
likelihood, `tasks.caption_likelihood`); then, per attribute (colour, secondary colour, pattern, part, mark),
the share of descriptions that name it right.

The speakers are the shipped GGUFs: the base (pre-trained only) and the base with the shipped RRG LoRA
applied at load time (what `rrg demo` runs). `--model-dir` points at another build's shipped folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from rrg_local.demo.attributes import ATTRIBUTES
    from rrg_local.demo.run import MODEL_DIR, shipped_model
    from rrg_local.demo.world import generate_benchmark
    from trainer.demo_tasks import held_out
    from trainer.eval import GGUFBackend, eval_data, format_table, run_columns

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 96 concepts: 288 games, a standard error of ~3.7 points on the difference (48: 144 games, ~5.2, as large
    # as the +5 points the demo-world issue asks for).
    ap.add_argument("--concepts", type=int, default=96)
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    ap.add_argument("--json", type=Path, help="Also write the full result (descriptions included) here.")
    args = ap.parse_args()

    model = shipped_model(args.model_dir)
    lora = model.manifest["files"].get("lora")
    if lora is None:
        print("this build has no RRG LoRA to compare against", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        bench = Path(tmp) / "held-out"
        world = generate_benchmark(bench, seed=args.seed, n_concepts=args.concepts, photos_per_concept=args.photos,
                                   accept=held_out)  # fmt: skip
        data = eval_data(bench, bench / "categories.csv", all_concepts=True, k=args.k, seed=args.seed)
        start = time.monotonic()
        backend = GGUFBackend.open(model.text, model.mmproj, lora=args.model_dir / lora["path"],
                                   image_max_tokens=model.image_max_tokens)  # fmt: skip
        try:
            raw = run_columns(backend, data)
            columns = {"untrained": raw["zero-shot"], "RRG-trained": raw["trained"]}
            for col in columns.values():
                col["metrics"]["identification (caption likelihood)"] = likelihood_identification(
                    backend.listener, data.games, col["descriptions"]
                )
        finally:
            backend.close()
        elapsed = time.monotonic() - start
    print(f"held-out concepts: {args.concepts} x {args.photos} photos, K = {args.k}, "
          f"{len(data.games)} identification games; listener: the frozen base; {elapsed:.0f} s\n")  # fmt: skip
    print(format_table(columns))
    n = len(data.games)
    before, after = (columns[c]["metrics"]["identification"] for c in ("untrained", "RRG-trained"))
    se = ((before * (1 - before) + after * (1 - after)) / n) ** 0.5
    print(f"\nidentification, RRG - untrained: {100 * (after - before):+.1f} points "
          f"(standard error {100 * se:.1f} over {n} games, the two taken as independent)")  # fmt: skip
    key = "identification (caption likelihood)"
    print("the same games, the listener's caption likelihood picking the photo's concept: "
          + ", ".join(f"{name} {col['metrics'][key]:.3f}" for name, col in columns.items()))  # fmt: skip
    print("\ndescriptions naming each attribute right (of the concepts described):")
    print(f"{'attribute':<12}" + "".join(f"{name:>14}" for name in columns))
    named = {name: named_right(col["descriptions"], world.concepts) for name, col in columns.items()}
    for attribute in ATTRIBUTES:
        print(f"{attribute:<12}" + "".join(f"{named[name][attribute]:>14.3f}" for name in columns))
    for name, col in columns.items():
        print(f"\n{name} descriptions (first 4):")
        for concept, (coarse, detailed) in list(col["descriptions"].items())[:4]:
            print(f"  {concept}: {coarse} {detailed}")
    if args.json:
        args.json.write_text(json.dumps({name: col | {"named_right": named[name]} for name, col in columns.items()},
                                        indent=1))  # fmt: skip
    return 0


def likelihood_identification(listener, games, descriptions: dict) -> float:
    """Share of games in which the candidate whose description the target photo explains best (the listener's
    `tasks.caption_likelihood`) is the answer: a listener that judges by its captions, not its yes/no."""
    import numpy as np

    from rrg_local.vlm import tasks
    from rrg_local.vlm.prompts import ConceptText
    from rrg_local.vlm.protocol import ImageRef

    hits = []
    for game in games:
        scores = [
            tasks.caption_likelihood(
                listener, ImageRef(game.target.path), ConceptText(c.concept, c.category, *descriptions[c.concept])
            ).logprob
            for c in game.candidates
        ]
        hits.append(int(np.argmax(scores)) == game.answer)
    return float(np.mean(hits)) if hits else float("nan")


def named_right(descriptions: dict, concepts: dict) -> dict[str, float]:
    """Per attribute: the share of concepts whose description (coarse + detailed) names it right."""
    from rrg_local.demo.attributes import ATTRIBUTES, read_attributes

    right = dict.fromkeys(ATTRIBUTES, 0)
    for name, texts in descriptions.items():
        concept = concepts[name]
        said = read_attributes(concept.category, " ".join(texts))
        for attribute in ATTRIBUTES:
            right[attribute] += said[attribute] == getattr(concept, attribute)
    return {k: v / max(1, len(descriptions)) for k, v in right.items()}


if __name__ == "__main__":
    raise SystemExit(main())
