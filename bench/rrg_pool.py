"""Pool `bench/rrg_effect.py --json` results over draws: each speaker's identification gain over the untrained one
under the three listeners the bench scores (yes/no, caption likelihood summed, caption likelihood per token).

Run: `.venv/bin/python bench/rrg_pool.py --games lookalike --seeds 7,9,11,13,15 --base 'runs/x/eval{seed}.json'
--speaker 'shipped=runs/s/eval{seed}.json' --speaker '144=runs/c144/eval{seed}.json'` (paths with `{seed}`; a
`:COLUMN` suffix picks another column than RRG-trained). `--base` holds the untrained and ground-truth columns
(they depend only on the base, the seed and `--games`). The games are drawn again from each seed as the bench drew
them (only their answers are needed). Results written before the bench stored per-token scores are divided here by
each description's token count under `--tokenizer` (a transformers folder of the same model, e.g. one that
`rrg-train demo-model --from-shipped` imports; the counts equal llama.cpp's on the runs that stored both). Prints
per speaker and listener the identification per draw, the pooled gain (the mean of the draws' gains) and its
standard error game by game.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LISTENERS = (("yes/no", "game_p_yes"), ("caption, summed", "game_likelihood"),
             ("caption, per token", "game_likelihood_per_token"))  # fmt: skip


def pooled(won: dict[int, list[bool]], base: dict[int, list[bool]]) -> tuple[float, float]:
    """The mean over draws of (share won - the base's share won), and the standard error of the mean of the games'
    paired differences, in points.

    >>> [round(x, 2) for x in pooled({1: [True, True], 2: [True, False]}, {1: [True, False], 2: [False, False]})]
    [50.0, 28.87]
    """
    import numpy as np

    gains = [np.mean(won[s]) - np.mean(base[s]) for s in won]
    diffs = np.concatenate([np.array(won[s], float) - np.array(base[s], float) for s in won])
    return float(100 * np.mean(gains)), float(100 * diffs.std(ddof=1) / np.sqrt(len(diffs)))


def main() -> int:
    import numpy as np

    from rrg_local.demo.world import LOOKALIKES, generate_benchmark
    from rrg_local.vlm.prompts import CAPTION_OPEN, speaker_answer
    from trainer.data import load_lookalikes
    from trainer.demo_tasks import held_out
    from trainer.eval import eval_data

    sys.path.insert(0, str(ROOT / "bench"))
    from rrg_effect import per_token, won

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", required=True, help="comma-separated draws, as given to rrg_effect.py --seed")
    ap.add_argument("--games", choices=("nearest", "lookalike"), default="nearest")
    ap.add_argument("--concepts", type=int, default=96)
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--base", required=True, help="JSON path with {seed}: the untrained and ground truth columns")
    ap.add_argument("--speaker", action="append", default=[], help="NAME=PATH with {seed}[:COLUMN]")
    ap.add_argument("--tokenizer", type=Path, help="transformers folder, for results without per-token scores")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    tok = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer)

    def column(spec: str, seed: int, default: str) -> dict:
        path, _, name = spec.partition(":")
        return json.loads(Path(path.format(seed=seed)).read_text())[name or default]

    def per_token_scores(col: dict, candidates: list[list[str]]) -> list[list[float]]:
        if "game_likelihood_per_token" in col:
            return col["game_likelihood_per_token"]
        if tok is None:
            raise SystemExit("a result without per-token scores: give --tokenizer")
        d = col["descriptions"]
        n = {c: len(tok(speaker_answer(*d[c]).removeprefix(CAPTION_OPEN), add_special_tokens=False).input_ids)
             for c in d}  # fmt: skip
        return per_token(col["game_likelihood"], [[n[c] for c in cs] for cs in candidates])

    names = ["untrained", "ground truth"] + [s.partition("=")[0] for s in args.speaker]
    results: dict[tuple[str, str], dict[int, list[bool]]] = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            bench = Path(tmp) / "held-out"
            generate_benchmark(bench, seed=seed, n_concepts=args.concepts, photos_per_concept=args.photos,
                               accept=held_out)  # fmt: skip
            alike = load_lookalikes(bench / LOOKALIKES) if args.games == "lookalike" else None
            data = eval_data(bench, bench / "categories.csv", all_concepts=True, k=args.k, seed=seed,
                             lookalikes=alike)  # fmt: skip
        candidates = [[c.concept for c in g.candidates] for g in data.games]
        cols = {
            "untrained": column(args.base, seed, "untrained"),
            "ground truth": column(args.base, seed, "ground truth"),
        }
        cols |= {s.partition("=")[0]: column(s.partition("=")[2], seed, "RRG-trained") for s in args.speaker}
        for name, col in cols.items():
            col["game_likelihood_per_token"] = per_token_scores(col, candidates)
            for listener, key in LISTENERS:
                results.setdefault((name, listener), {})[seed] = won(col[key], data.games)
    print(f"identification among K = {args.k}, {args.games} games, draws {args.seeds}: per draw; pooled gain over the "
          "untrained speaker (standard error, paired game by game)")  # fmt: skip
    print("| speaker | listener | per draw | pooled gain |\n|---|---|---|---|")
    for name in names:
        for listener, _ in LISTENERS:
            per = " / ".join(f"{np.mean(results[name, listener][s]):.3f}" for s in seeds)
            gain, se = pooled(results[name, listener], results["untrained", listener])
            print(f"| {name} | {listener} | {per} | {gain:+.1f} ({se:.1f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
