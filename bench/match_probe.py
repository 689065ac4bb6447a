"""Where in the demo model is the match? A linear probe on each layer's output at the described attribute word.

Run: `.venv/bin/python bench/match_probe.py --hf RUN/listener/hf [--attribute mark] [--concepts 300]`.
For held-out concepts (`trainer.demo_tasks.listener_probes`), the recognition prompt with the concept's complete
description is put to a demo build's HF folder twice: with a photo of the concept and with one of its
look-alike in `--attribute` (the same object, that attribute changed). At the word of the description that
the look-alike makes false (`demo_tasks.word_checks`), every layer's output (0: the embeddings) and the
decision token's are collected; a logistic regression per layer is fitted on 70% of the photos and its AUC
(own photo against look-alike) printed for the other 30%. 0.5: nothing at that layer tells whether the photo
matches the described word; the word checks (`DemoConfig.match_weight`) and the decision can only read what is
there.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    from rrg_local.demo.attributes import ATTRIBUTES
    from trainer.demo_model import forward, open_hf

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", type=Path, required=True, help="a demo build's HF folder (RUN/listener/hf)")
    ap.add_argument("--attribute", choices=ATTRIBUTES, default="mark")
    ap.add_argument("--concepts", type=int, default=300)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()

    model, encoder = open_hf(args.hf)
    model.eval()
    samples = pair_samples(random.Random(args.seed), args.attribute, args.concepts)
    at_word: list[list] = []
    at_decision: list[list] = []
    with torch.no_grad():
        for i in range(0, len(samples), 32):  # even: a concept's two samples stay in one batch
            chunk = samples[i : i + 32]
            batch = encoder(chunk, model)
            _, _, hidden = forward(model, batch, bf16=True, hidden=True)
            for j in range(0, len(chunk), 2):
                pos = [p for p, ok in batch["checks"][j + 1] if not ok][-1]  # the look-alike's false word
                for k in (j, j + 1):  # the same prompt, so the same position in both
                    at_word.append([h[k, pos].float() for h in hidden])
                    at_decision.append([h[k, batch["decisions"][k]].float() for h in hidden])
    labels = torch.tensor([1.0, 0.0] * args.concepts)
    print(f"{args.hf}: {args.concepts} held-out concepts, own photo against its {args.attribute} look-alike")
    print(f"| {'layer output':<12} | {'AUC at the word':>15} | {'AUC at the decision':>19} |")
    print(f"|{'-' * 14}|{'-' * 17}|{'-' * 21}|")
    for layer in range(len(at_word[0])):
        word = probe_auc(torch.stack([row[layer] for row in at_word]), labels)
        decision = probe_auc(torch.stack([row[layer] for row in at_decision]), labels)
        name = "embeddings" if layer == 0 else f"layer {layer}"
        print(f"| {name:<12} | {word:>15.3f} | {decision:>19.3f} |")
    return 0


def pair_samples(rng: random.Random, attribute: str, n: int) -> list:
    """Per concept of `listener_probes`: its complete description with a photo of itself (Yes) and of its
    `attribute` look-alike (No)."""
    from dataclasses import replace

    from rrg_local.demo.photo import render_photo
    from rrg_local.demo.scenes import SCENES
    from rrg_local.vlm import prompts
    from trainer.demo_tasks import REF, Sample, listener_probes, word_checks

    probes = listener_probes(rng, n)
    own = [p for p in probes if p.kind == "positive"]
    looks = [p for p in probes if p.kind == f"lookalike:{attribute}"]
    out = []
    for pair in zip(own, looks, strict=True):
        for probe, answer in zip(pair, ("Yes", "No"), strict=True):
            text = replace(probe.description.text(), name="Bo", category=probe.described.category)
            img, _ = render_photo([probe.shown], rng.choice(SCENES), rng, 224)
            checks = word_checks(probe.described, probe.description, probe.shown)
            out.append(Sample("recognition", prompts.recognition(REF, text), img, ('{"Answer": "', answer, '"}'), 1,
                              ("Yes", "No"), int(answer == "No"), (), text.description(), checks))  # fmt: skip
    return out


def probe_auc(features, labels, train: float = 0.7, steps: int = 500) -> float:
    """A logistic regression (standardized features, L2 1e-2, Adam) fitted on the first `train` share of the
    rows; its AUC on the rest."""
    import torch

    from trainer.demo_model import auc

    x = (features - features.mean(0)) / (features.std(0) + 1e-5)
    k = int(len(labels) * train) // 2 * 2
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x[:k] @ w + b, labels[:k])
        (loss + 1e-2 * w.square().sum()).backward()
        opt.step()
    with torch.no_grad():
        scores, truth = (x[k:] @ w + b).tolist(), labels[k:].tolist()
    pairs = list(zip(scores, truth, strict=True))
    return auc([s for s, t in pairs if t], [s for s, t in pairs if not t])


if __name__ == "__main__":
    raise SystemExit(main())
