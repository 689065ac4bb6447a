#!/usr/bin/env bash
# GPU smoke test of the RRG trainer (at most 10 minutes on one GPU), for a machine with CUDA:
#   1. the tiny Qwen2-VL trains a few RRG steps in bf16 with LoRA: seconds per step and peak GPU memory;
#   2. the same in 4-bit (QLoRA) if bitsandbytes imports there, else says it was skipped;
#   3. the phase probe at Qwen2-VL-2B shapes (bench/gpu_probe.py): speaker / listener / update seconds.
# Run from the repo root: `bash bench/gpu_smoke.sh [TINY_HF_DIR]`. Without TINY_HF_DIR it builds the tiny
# model with trainer/tiny.py (needs `tokenizers`); with it, it uses that HF folder (as built here).
set -euo pipefail
set -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d)
TINY=${1:-}

"$PY" - "$WORK" "$TINY" <<'EOF'
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw


def draw_photo(seed, size):  # shapes on a background; the GPU machine lacks the test suite's dependencies
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x0, y0 = rng.randint(0, size[0] - 20), rng.randint(0, size[1] - 20)
        draw.ellipse([x0, y0, x0 + rng.randint(10, 60), y0 + rng.randint(10, 60)],
                     fill=tuple(rng.randint(0, 255) for _ in range(3)))
    return img


work, tiny = Path(sys.argv[1]), sys.argv[2]
if not tiny:
    from trainer.tiny import TinyConfig, build_tiny

    tiny = str(build_tiny(work / "tiny-hf", TinyConfig()))
root = work / "bench"
for c in range(4):
    for i in range(3):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        draw_photo(1000 * c + i, (112, 112)).save(root / f"c{c}" / f"{i}.jpg", quality=90)
(work / "categories.csv").write_text("concept,category\nc0,mug\nc1,mug\nc2,toy\nc3,toy\n")
(work / "base.txt").write_text(tiny)
EOF

run_tiny() {  # $1: label, rest: overrides
  local label=$1
  shift
  "$PY" - "$WORK" "$label" "$@" <<'EOF'
import json
import os
import sys
import time
from pathlib import Path

import torch

from trainer.config import load_config
from trainer.train import train

work, label, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
DEVICE = os.environ.get("DEVICE", "cuda")
base = (work / "base.txt").read_text()
cfg = work / f"{label}.yaml"
cfg.write_text(
    f"base: {base}\ndata_root: {work / 'bench'}\ncategories: {work / 'categories.csv'}\n"
    f"out_dir: {work / ('run-' + label)}\nname: smoke\npre_tokenizer: qwen2\nsteps: 6\ntargets_per_step: 4\n"
    f"group_size: 4\nmax_new_tokens: 32\ndevice: {DEVICE}\nsave_every: 100\n"
)
cuda = DEVICE.startswith("cuda")
if cuda:
    torch.cuda.reset_peak_memory_stats()
t = time.perf_counter()
run = train(load_config(cfg, overrides))
total = time.perf_counter() - t
rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
steady = rows[1:] or rows
split = {k: sum(r[k] for r in steady) / len(steady) for k in ("t_sample", "t_listener", "t_update")}
per_step = sum(split.values())
peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB on {torch.cuda.get_device_name()}" if cuda else "n/a (cpu)"
print(f"{label}: {len(rows)} steps in {total:.1f}s (incl. load); {per_step:.3f} s/step after the first "
      f"(sample {split['t_sample']:.3f}, listener {split['t_listener']:.3f}, update {split['t_update']:.3f}); "
      f"reward {rows[0]['reward_mean']:.3f} -> {rows[-1]['reward_mean']:.3f}; peak GPU memory {peak}")
EOF
}

echo "== tiny model, bf16 + LoRA"
run_tiny bf16 dtype=bfloat16
if "$PY" -c "import bitsandbytes" 2>/dev/null; then
  echo "== tiny model, 4-bit base (QLoRA)"
  run_tiny qlora load_in_4bit=true
else
  echo "== 4-bit skipped: bitsandbytes does not import on this machine"
fi
[ "${DEVICE:-cuda}" = cpu ] && exit 0  # a CPU check of this script stops here
echo "== phase probe, Qwen2-VL-2B shapes"
"$PY" bench/gpu_probe.py --shape 2b --repeat 2 2>&1 | grep -v -i warn
