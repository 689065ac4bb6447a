"""Can a demo build learn the yes/no comparison at all? Text against text, no photo: AUC per kind as it trains.

Run: `.venv/bin/python bench/comparison_testbed.py --hf RUN/listener/hf [--steps 500] [--lr 1e-3]`. The
listener's answer is given its reasoning first, teacher forced with the truth (`"Reasoning": "I see a red mug
with ..."`, `trainer.demo_tasks.seen_sentence`), on a blank grey photo, so the decision only has to compare the
concept's description with that sentence. It trains on minimal pairs (the described concept and a look-alike
one attribute apart, or another concept; `--focus` keeps only look-alikes that differ in those attributes),
loss on the decision token only, and every `--eval-every` steps prints the AUC of P(Yes) of the concept's own
"photo" against each kind (`listener_probes`, held-out concepts). Nothing is saved unless `--out` is given.

`--checks` makes each comparison a local step: after the "I see" sentence the reasoning checks every attribute
the description names, "Colour red, said blue: no." (the value seen, the value described, the verdict), and the
loss covers those checks and the decision (`--checks verdicts`: the verdicts and the decision only). The AUC is
then read from the verdicts, teacher forced: the lowest P(yes) among a sample's verdicts.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


CHECKED = ("category", "colour", "secondary", "pattern", "part", "mark")


def checks(described, named, shown) -> str:
    """Per attribute the description names: what is seen, what is said, and whether they agree.

    >>> from rrg_local.demo.attributes import Concept
    >>> a = Concept("mug", "red", "blue", "dots", "round", "star")
    >>> checks(a, {"colour", "pattern"}, Concept("mug", "red", "blue", "stripes", "round", "star"))
    'Colour red, said red: yes. Pattern stripes, said dots: no.'
    """
    parts = []
    for attribute in CHECKED:
        if attribute in named:
            seen, said = getattr(shown, attribute), getattr(described, attribute)
            parts.append(f"{attribute.capitalize()} {seen}, said {said}: {'yes' if seen == said else 'no'}.")
    return " ".join(parts)


def reasoned(described, desc, shown, rng: random.Random, image, with_checks: bool = False):
    """A recognition sample whose answer states what is seen (`shown`) before Yes or No (`with_checks`: and
    checks each named attribute; the checks are then segment 2 and the decision segment 4)."""
    from dataclasses import replace

    from rrg_local.demo.photo import render_photo
    from rrg_local.demo.scenes import SCENES
    from rrg_local.vlm import prompts
    from trainer import demo_tasks as dt

    _, truth = render_photo([shown], rng.choice(SCENES), rng, 64, n_distractors=0)
    answer = dt.prompts_yes(dt.consistent(described, desc.named, shown))
    text = replace(desc.text(), name=rng.choice(dt.NAMES), category=described.category)
    segments, at = dt.reasoning_first(answer, dt.seen_sentence(shown, truth))
    if with_checks:  # ('{"Reasoning": "', seen, checks, ', "Answer": "', answer, '"}')
        seen = segments[1][:-1] + " "
        segments, at = (segments[0], seen, checks(described, desc.named, shown) + '"', *segments[2:]), 4
    messages = prompts.recognition(dt.REF, text)
    return dt.Sample("recognition", messages, image, segments, at, ("Yes", "No"), int(answer == "No"))


def train_pairs(rng: random.Random, focus: set[str], hard: float, image, with_checks: bool = False) -> list:
    from rrg_local.demo.attributes import lookalikes
    from trainer import demo_tasks as dt

    concept = dt.draw_concept(rng, evaluation=False)
    looks = [
        c for c in lookalikes(concept, rng) if not focus or any(getattr(c, a) != getattr(concept, a) for a in focus)
    ]
    other = rng.choice(looks) if rng.random() < hard else dt.draw_concept(rng, evaluation=False)
    desc = dt.describe(concept, rng, style="complete" if rng.random() < 0.8 else "casual")
    return [reasoned(concept, desc, shown, rng, image, with_checks) for shown in (concept, other)]


def targets(encoder, samples: list, batch: dict, mode: str):
    """The training targets (-100 elsewhere): the decision token; with checks, also the checks' tokens (all of
    them, or only their verdicts). Returns (targets, per sample the positions of its verdict tokens)."""
    import torch

    yes, no = encoder.ids(" yes")[0], encoder.ids(" no")[0]
    out = torch.full_like(batch["labels"], -100)
    verdicts = []
    for i, sample in enumerate(samples):
        pos = batch["decisions"][i]
        out[i, pos + 1] = batch["labels"][i, pos + 1]
        if mode == "off":
            verdicts.append([])
            continue
        # The checks end where the decision's segment starts, less the tokens of the segment between them.
        end = pos + 1 - len(encoder.ids(sample.segments[3]))
        start = end - len(encoder.ids(sample.segments[2]))
        ids = batch["inputs"]["input_ids"][i, start:end].tolist()
        verdicts.append([start + j for j, t in enumerate(ids) if t in (yes, no)])
        for j in range(start, end) if mode == "all" else verdicts[-1]:
            out[i, j] = batch["labels"][i, j]
    return out, verdicts


def main() -> int:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from trainer.demo_model import auc, open_hf, score
    from trainer.demo_tasks import listener_probes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", type=Path, required=True, help="a demo-model build's HF folder")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hard", type=float, default=0.75, help="share of look-alike negatives")
    ap.add_argument("--focus", default="", help="comma list: look-alikes only in these attributes")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--concepts", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="save the trained model here")
    ap.add_argument("--checks", choices=("off", "all", "verdicts"), default="off",
                    help="per-attribute checks in the reasoning, and what of them is trained on")  # fmt: skip
    args = ap.parse_args()
    try:
        model, encoder = open_hf(args.hf, args.threads)
    except ValueError as e:
        ap.error(str(e))
    blank = Image.new("RGB", (224, 224), (128, 128, 128))
    focus = set(filter(None, args.focus.split(",")))
    probes = listener_probes(random.Random(777), args.concepts)
    erng = random.Random(1)
    with_checks = args.checks != "off"
    held = [reasoned(p.described, p.description, p.shown, erng, blank, with_checks) for p in probes]
    yes_no = [encoder.ids(" yes")[0], encoder.ids(" no")[0]]

    def evaluate() -> dict[str, float]:
        model.eval()
        rows = []
        with torch.no_grad():
            for i in range(0, len(held), 32):
                chunk = held[i : i + 32]
                batch = encoder(chunk, model)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = model(**batch["inputs"]).logits
                if not with_checks:
                    rows += [row["p_first"] for row in score(chunk, batch, logits, encoder)]
                    continue
                _, verdicts = targets(encoder, chunk, batch, args.checks)
                for i, where in enumerate(verdicts):  # logits at j - 1 predict the verdict at j
                    rows.append(min(float(logits[i, j - 1, yes_no].float().softmax(-1)[0]) for j in where))
        model.train()
        by = defaultdict(list)
        for probe, row in zip(probes, rows, strict=True):
            by[probe.kind].append(row)
        own = by.pop("positive")
        return {k.removeprefix("lookalike:"): auc(own, v) for k, v in sorted(by.items())}

    def show(step: int, loss: float, aucs: dict[str, float], start: float) -> None:
        cells = " | ".join(f"{v:.2f}" for v in aucs.values())
        print(f"| {step:>5} | {loss:>5.3f} | {time.monotonic() - start:>5.0f} | {cells} |", flush=True)

    first = evaluate()
    print(f"| {'step':>5} | {'loss':>5} | {'s':>5} | " + " | ".join(first) + " |")
    print("|" + "---|" * (3 + len(first)))
    start = time.monotonic()
    show(0, float("nan"), first, start)
    rng = random.Random(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    for step in range(1, args.steps + 1):
        samples: list = []
        while len(samples) < args.batch:
            samples += train_pairs(rng, focus, args.hard, blank, with_checks)
        batch = encoder(samples, model)
        wanted, _ = targets(encoder, samples, batch, args.checks)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, step / 20)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(**batch["inputs"]).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), wanted[:, 1:].flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            show(step, float(loss.detach()), evaluate(), start)
    if args.out:
        model.save_pretrained(args.out)
        encoder.tok.save_pretrained(args.out)
        encoder.proc.save_pretrained(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
