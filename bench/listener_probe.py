"""Which differences does the yes/no listener see? The demo model's P(Yes) by kind of negative, through llama.cpp.

Run: `.venv/bin/python bench/listener_probe.py [--concepts 60] [--model-dir DIR | --hf RUN/listener/hf]`.
For held-out concepts (`trainer.demo_tasks.listener_probes`), the world's complete description is put to the
shipped base model (the frozen listener of `bench/rrg_effect.py`, as `rrg_local.vlm.tasks.recognize` asks
it) with a photo of the concept itself, of each look-alike (the same object, one attribute changed), of
another object of its category and of one of another category. Printed per kind: the mean P(Yes) and the AUC
of positives against that kind (0.5: the listener does not see that difference; 1.0: it always ranks the
right photo higher). `--hf` asks a demo build's HF folder instead (bf16, the same prompt and photos, P(Yes)
read at the answer's decision token): a phase measured before it is exported; it also prints the AUC of the
word checks (`DemoConfig.match_weight`), each probe scored by its least believed described word at `--layer`.
`--reasoning` asks as `recognize(reasoning=True)` does (the model first says what it sees, then answers) and
also prints, per look-alike kind, how often that "I see ..." names the attribute right: the described value on
the concept's own photo, the look-alike's on the look-alike's photo (`demo_tasks.telling_phrases`). High there
with an AUC near 0.5: the model sees the difference but its answer does not compare it with the description.
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
    from rrg_local.vlm.protocol import ImageRef
    from rrg_local.vlm.tasks import recognize
    from trainer.demo_model import auc
    from trainer.demo_tasks import listener_probes, word_checks
    from trainer.eval import GGUFBackend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concepts", type=int, default=60)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    ap.add_argument("--hf", type=Path, help="a demo build's HF folder (RUN/listener/hf) instead of GGUF files")
    ap.add_argument("--layer", type=int, default=2, help="--hf: the layer whose output the word checks read")
    ap.add_argument("--reasoning", action="store_true", help="reasoning first (GGUF only): what it says it sees")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    probes = listener_probes(rng, args.concepts)
    p_yes: dict[str, list[float]] = defaultdict(list)
    word: dict[str, list[float]] = defaultdict(list)
    words: list[float] = []
    seen: list[str] = []  # --reasoning: what the model said it sees, per probe
    with tempfile.TemporaryDirectory() as tmp:
        paths, texts = [], []
        for i, probe in enumerate(probes):
            img, _ = render_photo([probe.shown], rng.choice(SCENES), rng, args.size)
            paths.append(Path(tmp) / f"{i:05d}.jpg")
            img.save(paths[-1], "JPEG", quality=90)
            texts.append(replace(probe.description.text(), name="Bo", category=probe.described.category))
        if args.hf:
            checks = [word_checks(p.described, p.description, p.shown) for p in probes]
            name, (values, words) = str(args.hf), hf_p_yes(args.hf, paths, texts, checks, args.layer)
        else:
            model = shipped_model(args.model_dir)
            name, values = model.text.name, []
            backend = GGUFBackend.open(model.text, model.mmproj, image_max_tokens=model.image_max_tokens)
            try:
                for path, text in zip(paths, texts, strict=True):
                    if args.reasoning:
                        answer = recognize(backend.listener, ImageRef(path), text, reasoning=True)
                        values.append(answer.p_yes)
                        seen.append(answer.reasoning)
                    else:
                        values.append(backend.p_yes(path, text))
            finally:
                backend.close()
    for probe, value in zip(probes, values, strict=True):
        p_yes[probe.kind].append(value)
    # (no word checks through llama.cpp: `words` is empty there)
    for probe, value in zip(probes, words, strict=False):
        word[probe.kind].append(value)
    positives, own_words = p_yes.pop("positive"), word.pop("positive", [])
    print(f"listener: {name}, {args.concepts} held-out concepts, P(Yes) on their own photos "
          f"{sum(positives) / len(positives):.3f}")  # fmt: skip
    extra = f" {'word checks AUC':>15} |" if words else ""
    print(f"| {'photo shows':<22} | {'n':>4} | {'mean P(Yes)':>11} | {'AUC vs own photo':>16} |{extra}")
    print(f"|{'-' * 24}|{'-' * 6}|{'-' * 13}|{'-' * 18}|" + ("-" * 17 + "|" if words else ""))
    for kind in sorted(p_yes, key=lambda k: (not k.startswith("lookalike"), k)):
        values = p_yes[kind]
        extra = f" {auc(own_words, word[kind]):>15.3f} |" if words else ""
        print(f"| {kind:<22} | {len(values):>4} | {sum(values) / len(values):>11.3f} | "
              f"{auc(positives, values):>16.3f} |{extra}")  # fmt: skip
    if seen:
        print_seen(probes, seen)
    return 0


def print_seen(probes: list, seen: list[str]) -> None:
    """Per look-alike kind: how often the reasoning names the described value on the own photo and the
    look-alike's value on the look-alike's photo (probes of one concept follow its positive)."""
    from trainer.demo_tasks import telling_phrases

    own: dict[str, list[bool]] = defaultdict(list)
    other: dict[str, list[bool]] = defaultdict(list)
    said = ""
    for probe, text in zip(probes, seen, strict=True):
        if probe.kind == "positive":
            said = text
        elif probe.kind.startswith("lookalike:"):
            mine, theirs = telling_phrases(probe.described, probe.shown)
            own[probe.kind].append(mine in said)
            other[probe.kind].append(theirs in text)
    print("\nwhat the reasoning says it sees (share naming the right value)")
    print(f"| {'look-alike kind':<22} | {'own photo: described value':>26} | {'look-alike photo: its value':>27} |")
    print(f"|{'-' * 24}|{'-' * 28}|{'-' * 29}|")
    for kind in sorted(own):
        print(f"| {kind:<22} | {sum(own[kind]) / len(own[kind]):>26.3f} | "
              f"{sum(other[kind]) / len(other[kind]):>27.3f} |")  # fmt: skip


def hf_p_yes(
    hf: Path, paths: list[Path], texts: list, checks: list, layer: int = 2, batch_size: int = 32
) -> tuple[list[float], list[float]]:
    """P(Yes) of a demo build's HF model for each photo and concept text, the runtime's recognition prompt; and
    the least P(Yes) among the word checks of each (`checks[i]`, `word_checks`) read at `layer`."""
    import torch
    from PIL import Image

    from rrg_local.vlm import prompts
    from trainer.demo_model import check_logits, forward, open_hf, score
    from trainer.demo_tasks import REF, Sample

    model, encoder = open_hf(hf)
    model.eval()
    out: list[float] = []
    least: list[float] = []
    with torch.no_grad():
        for i in range(0, len(paths), batch_size):
            samples = [
                Sample(
                    "recognition",
                    prompts.recognition(REF, text),
                    Image.open(path).convert("RGB"),
                    ('{"Answer": "', "Yes", '"}'),
                    1,
                    ("Yes", "No"),
                    0,
                    (),
                    text.description(),
                    check,
                )  # fmt: skip
                for path, text, check in zip(*(x[i : i + batch_size] for x in (paths, texts, checks)), strict=True)
            ]
            batch = encoder(samples, model)
            logits, _, hidden = forward(model, batch, bf16=True, hidden=True)
            out += [row["p_first"] for row in score(samples, batch, logits, encoder)]
            lens, _, rows = check_logits(model, batch, hidden, layer)
            per: dict[int, float] = {}
            for row, p in zip(rows, torch.softmax(lens, -1)[:, 0].tolist(), strict=True):
                per[row] = min(p, per.get(row, 1.0))
            least += [per.get(j, 1.0) for j in range(len(samples))]
    return out, least


if __name__ == "__main__":
    raise SystemExit(main())
