"""Which settings move the demo build's floats? A short build under each variant, compared file by file.

Run: `.venv/bin/python bench/build_determinism.py` (2 cores, about a minute per variant). Each variant runs
`trainer.demo_model.pretrain` with the build's config (`demo_build.BuildConfig().pretrain`) cut short, stage A
40 steps (2 rendering workers) and stage B 6, in a fresh process with its environment changed, and the table
prints the SHA-256 (first 12 digits) of the seeded init, the tower after stage A and the final model, the last
losses, and whether each file is the first variant's to the last bit. Seconds are each run's own, as a ratio
against the first variant's.

Variants: `--variant "LABEL:KEY=VALUE ..."` (repeatable). Upper-case keys are environment variables; `bf16=false`
runs the build in f32, `bf16=force` with bf16 autocast even where `trainer.hardware.native_bf16` would turn it off
(a CPU without bf16 instructions, or oneDNN capped below them); `fast=true` runs stage B as `rrg-train demo-model
--fast` does (`demo_build.FAST`: compiled, in passes cut by length), so two such variants say whether the fast
build repeats itself bit for bit. None given: the machine as it is, f32, and
oneDNN capped at AVX512_CORE and at AVX2, each with bf16 forced and with what the build picks there (f32). A
package version is a variant too: install it aside (`pip install --no-deps --target /tmp/t524
transformers==5.24.0`) and pass `"transformers 5.24:PYTHONPATH=/tmp/t524"`. Measured 2026-12-07 (AMD EPYC with
AVX512-BF16): transformers 5.24.0 / 5.25.0, Pillow 11.3.0 / 12.3.0 / 13.0.0 and NumPy 2.3.5 / 2.4.5 / 2.4.6 made
the same three files; either oneDNN cap changed the tower and the model (README, "The demo model build").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_VARIANTS = (
    "as is:",
    "f32:bf16=false",
    "oneDNN AVX512_CORE, bf16 forced:ONEDNN_MAX_CPU_ISA=AVX512_CORE bf16=force",
    "oneDNN AVX512_CORE:ONEDNN_MAX_CPU_ISA=AVX512_CORE",
    "oneDNN AVX2, bf16 forced:ONEDNN_MAX_CPU_ISA=AVX2 bf16=force",
    "oneDNN AVX2:ONEDNN_MAX_CPU_ISA=AVX2",
)
BF16 = ("true", "false", "force")
FILES = {"init": "init/model.safetensors", "tower": "vision.pt", "model": "hf/model.safetensors"}


def parse_variant(text: str) -> tuple[str, dict[str, str], str, bool]:
    """`"LABEL:KEY=VALUE ..."` -> (label, environment changes, bf16: "true", "false" or "force", fast).

    >>> parse_variant("capped:ONEDNN_MAX_CPU_ISA=AVX2 PYTHONPATH=/tmp/x bf16=force")
    ('capped', {'ONEDNN_MAX_CPU_ISA': 'AVX2', 'PYTHONPATH': '/tmp/x'}, 'force', False)
    >>> parse_variant("as is:")
    ('as is', {}, 'true', False)
    >>> parse_variant("fast:fast=true")
    ('fast', {}, 'true', True)
    >>> parse_variant("no colon")
    Traceback (most recent call last):
    ...
    ValueError: a variant is LABEL:KEY=VALUE ..., got 'no colon'
    >>> parse_variant("x:bf16=maybe")
    Traceback (most recent call last):
    ...
    ValueError: bf16 is one of true, false, force, got 'maybe'
    """
    label, colon, rest = text.partition(":")
    pairs = [item.partition("=") for item in rest.split()]
    if not colon or not label.strip() or any(not key or not eq for key, eq, _ in pairs):
        raise ValueError(f"a variant is LABEL:KEY=VALUE ..., got {text!r}")
    env = {key: value for key, _, value in pairs if key not in ("bf16", "fast")}
    bf16 = next((value for key, _, value in pairs if key == "bf16"), "true").lower()
    if bf16 not in BF16:
        raise ValueError(f"bf16 is one of {', '.join(BF16)}, got {bf16!r}")
    fast = next((value for key, _, value in pairs if key == "fast"), "false").lower() == "true"
    return label.strip(), env, bf16, fast


def child(out: Path, bf16: str, fast: bool = False) -> None:
    """One short build in `out`; prints one JSON line: versions, file hashes, last losses."""
    from dataclasses import replace

    import numpy
    import PIL
    import transformers

    from rrg_local.vlm.gguf_meta import file_sha256
    from trainer import demo_model
    from trainer.demo_build import FAST, config_with
    from trainer.hardware import machine

    config = config_with(FAST if fast else ()).pretrain
    config = replace(config, vision=replace(config.vision, steps=40, log_every=20, held_out=64), steps=6,
                     eval_every=3, eval_size=8, bf16=bf16 != "false")  # fmt: skip
    if bf16 == "force":
        demo_model.native_bf16 = lambda device: True
    start = time.monotonic()
    demo_model.pretrain(config, out, log=lambda *_: None)
    row = {
        "seconds": round(time.monotonic() - start, 1),
        "versions": f"transformers {transformers.__version__}, Pillow {PIL.__version__}, NumPy {numpy.__version__}",
        "machine": machine(),
        "bf16": demo_model.uses_bf16(config),
        **{name: file_sha256(out / path)[:12] for name, path in FILES.items()},
        "loss_a": json.loads((out / "vision_metrics.jsonl").read_text().splitlines()[-1])["loss"],
        "loss_b": json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["loss"],
    }
    print(json.dumps(row))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", help='"LABEL:KEY=VALUE ..." (repeatable)')
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--bf16", default="true", choices=BF16, help=argparse.SUPPRESS)
    ap.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.bf16, args.fast)
        return 0
    try:
        variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, changes, bf16, fast) in enumerate(variants):
            out = Path(tmp) / f"v{i}"
            env = {**os.environ, **changes}
            command = [sys.executable, __file__, "--child", str(out), "--bf16", bf16, *["--fast"] * fast]
            done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode or not lines:
                print(f"error: variant {label!r} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}",
                      file=sys.stderr)  # fmt: skip
                return 1
            rows.append((label, json.loads(lines[-1])))
    first = rows[0][1]
    print(f"machine: {first['machine']}")
    head = ["variant", "versions", "autocast", *FILES, "same as first", "loss A", "loss B", "time"]
    table = [head]
    for label, row in rows:
        same = "/".join("yes" if row[name] == first[name] else "no" for name in FILES)
        autocast = "bf16" if row["bf16"] else "f32"
        losses = [f"{row['loss_a']:.4f}", f"{row['loss_b']:.4f}"]
        ratio = f"{row['seconds'] / first['seconds']:.2f}x"
        table.append([label, row["versions"], autocast, *(row[name] for name in FILES), same, *losses, ratio])
    widths = [max(len(str(r[c])) for r in table) for c in range(len(head))]
    for r in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    print("same as first: init / tower / model, bit for bit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
