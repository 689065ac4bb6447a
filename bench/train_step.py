"""Benchmark of one RRG GRPO step on the tiny Qwen2-VL: seconds per step and where they go, for G = 4 and 8.

Run: `.venv/bin/python bench/train_step.py` (CPU, one thread; about ten seconds). Options: `--groups 4 8 16`,
`--targets N` (targets_per_step), `--steps N` (timed steps after one warm-up), `--max-new-tokens N`, `--K N`.
It writes a 4-concept benchmark of generated photos to a temporary folder, builds a session with
`trainer.train.setup` and times `trainer.train.play_step`: generation (the speaker's G samples), the
listener (G x K yes/no forwards, adapter off) and the update (`grpo_step`). Every column is also given as a
ratio against the first group size's step. The tiny model's weights are random, so its descriptions run to
`max_new_tokens`: the numbers measure cost, never quality. On a GPU the speaker's sampling is latency-bound
and these ratios do not carry over; run this script there with `--device cuda` to measure it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def time_group(root: Path, hf_dir: Path, group: int, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds of each phase over `args.steps` steps, after one warm-up step."""
    from trainer.config import TrainConfig
    from trainer.train import games_for_step, play_step, setup

    config = TrainConfig(
        base=str(hf_dir),
        data_root=str(root / "photos"),
        categories=str(root / "categories.csv"),
        out_dir=str(root / "run"),
        test_fraction=0.0,
        K=args.K,
        group_size=group,
        targets_per_step=args.targets,
        max_new_tokens=args.max_new_tokens,
        lora_r=8,
        lora_alpha=16,
        lr=1e-3,
        device=args.device,
    )
    session = setup(config)
    rows = []
    for step in range(1, args.steps + 2):
        rows.append(play_step(session, games_for_step(session.games, step, args.targets, config.seed)))
    rows = rows[1:]
    phases = {k: statistics.median(r[k] for r in rows) for k in ("t_sample", "t_listener", "t_update")}
    return {"step": sum(phases.values()), **phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--targets", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--K", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from trainer.tiny import tiny_gguf

    torch.set_num_threads(1)
    hf_dir = tiny_gguf().hf_dir
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        from tests.conftest import write_benchmark

        write_benchmark(Path(tmp))
        for group in args.groups:
            results[group] = time_group(Path(tmp), hf_dir, group, args)
    base = results[args.groups[0]]
    print(f"tiny Qwen2-VL, {args.device}, 1 thread, K={args.K}, targets/step={args.targets}, "
          f"max_new_tokens={args.max_new_tokens}, median of {args.steps} steps")  # fmt: skip
    print(f"{'G':>3} | {'step s':>14} | {'generation s':>14} | {'listener s':>14} | {'update s':>14}")
    for group, row in results.items():
        cells = [f"{row[k]:7.3f} ({row[k] / base[k]:4.2f}x)" for k in ("step", "t_sample", "t_listener", "t_update")]
        print(f"{group:>3} | " + " | ".join(f"{c:>14}" for c in cells))
    shares = {g: ", ".join(f"{k[2:]} {r[k] / r['step']:.0%}" for k in ("t_sample", "t_listener", "t_update"))
              for g, r in results.items()}  # fmt: skip
    for group, text in shares.items():
        print(f"G={group}: {text}")


if __name__ == "__main__":
    main()
