"""The demo model's whole build: pre-train from scratch, RRG-train the speaker, export GGUF, ship with a manifest.

`rrg-train demo-model --out RUN [--ship rrg_local/demo/model]` runs, in `RUN/`:
1. `pretrain/`: `trainer.demo_model.pretrain` (the world's describe / recognize / identify / answer tasks);
2. `bench-train/`: a benchmark of training-split concepts (`rrg_local.demo.world.generate_benchmark`);
3. `rrg/`: `trainer.train.train`, GRPO + LoRA on the speaker with the frozen pre-trained listener;
4. `rrg/export/`: merged model -> GGUF text + mmproj (`trainer.export.export_run`).
Every stage resumes or skips when its output exists, and the whole build is seeded. `ship` copies the chosen
GGUF pair into the package with `manifest.json`: the configs, seeds, step counts, final held-out metrics,
timings, tool versions and file hashes, so `rrg demo` needs no training.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rrg_local.vlm.gguf_meta import file_sha256
from trainer.demo_model import DemoConfig, pretrain, read_metrics
from trainer.demo_vision import VisionConfig
from trainer.hardware import machine

SHIPPED = Path(__file__).resolve().parent.parent / "rrg_local" / "demo" / "model"
TEXT_NAME = "rrg-demo-text-f16.gguf"
MMPROJ_NAME = "rrg-demo-mmproj-f16.gguf"
LORA_NAME = "rrg-demo-speaker-lora-f16.gguf"
IMAGE_MAX_TOKENS = 16
# The RRG stage's `TrainConfig` fields the build sets itself (`rrg_stage`); `rrg.*` overrides the others.
RRG_FIXED = frozenset({"base", "data_root", "categories", "out_dir", "device", "lookalikes", "db"})


# `rrg-train demo-model --fast`: stage B's language model compiled and its passes cut by token count, in 3
# passes (`DemoConfig.compile`, `DemoConfig.length_batches`): the same recipe up to rounding, in less time.
FAST = tuple(
    f"{phase}.{key}"
    for phase in ("pretrain", "listener")
    for key in ("compile=true", "length_batches=true", "micro_batches=3")
)


@dataclass(frozen=True)
class BuildConfig:
    """The build beyond pre-training: the RRG stage's benchmark and run settings."""

    # Stage A for 5000 steps with the part head over (category, part) pairs (its tower sees patterns and marks:
    # held out 0.73 / 0.83; the earlier build's 1000 steps ended at 0.39 / 0.46 on its training batches), rendered
    # by 2 workers while the tower trains on 1 thread; B1 and B2 with the word checks (`DemoConfig.match_weight`),
    # without which no B2 on a tower that sees more made a yes/no listener.
    pretrain: DemoConfig = DemoConfig(
        vision=VisionConfig(steps=5000, held_out=512, log_every=250, part_by_category=True, workers=2, threads=1),
        match_weight=1.0,
    )
    # Phase 2 of stage B, from phase 1's model: mostly the listener roles, at a lower learning rate (phase 1's
    # recognition only moved once its learning rate had decayed). Its speaker task is mostly casual (0.85: an
    # attribute or two left out, scene or pose added), so the untrained speaker mentions context as real models
    # do (0.90 of held-out descriptions; at 0.5 greedy decoding followed the complete template, context 0.08,
    # leaving RRG nothing to fix).
    listener: DemoConfig | None = DemoConfig(
        vision=VisionConfig(steps=0),
        steps=1100,
        lr=6e-4,
        warmup=50,
        mix_start=(0.15, 0.55, 0.25, 0.05),
        mix_end=(0.15, 0.55, 0.25, 0.05),
        hard_start=0.75,
        hard_end=0.75,
        match_weight=1.0,
        speaker_casual=0.85,
    )
    bench_concepts: int = 36
    bench_photos: int = 5
    # The RRG games' negatives from the target's look-alike group first (one attribute apart), then the rest of
    # its category by pixel similarity (off: by pixel similarity only, where look-alikes are rare): the paper's
    # hard negatives, and the games the untrained speaker's omissions lose.
    lookalike_games: bool = True
    rrg: dict[str, Any] = field(
        default_factory=lambda: {
            "steps": 300,  # vs 150 on held-out validation concepts (seed 8, 432 games): +13.7 vs +11.4 points
            "targets_per_step": 2,
            "group_size": 4,
            "K": 3,
            "lr": 2e-4,
            "lora_r": 16,
            "lora_alpha": 32,
            "max_new_tokens": 64,
            "temperature": 1.0,
            "save_every": 20,
            "test_fraction": 0.0,
            "pre_tokenizer": "qwen2",
            "name": "rrg-demo",
            # The world's complete descriptions have 13-16 words: the paper's 20-word minimum made the speaker
            # pad with context ("on the street on the street"), RRG then lost 5 points of identification.
            "detailed_min_words": 13,
            # The reward's listener is the runtime's own yes/no one (caption_text rose more in training, 0.48 ->
            # 0.73 game reward, but held out it won +0.3 points where yes_no won +5.2; seed 7, look-alike games).
            "listener": "yes_no",
        }
    )


def rrg_stage(config: BuildConfig, run: Path, base: Path, log=print) -> Path:
    """Write the training benchmark (if missing) and run (or resume) RRG training; returns the run folder."""
    from rrg_local.demo.world import LOOKALIKES, generate_benchmark
    from trainer.config import from_mapping
    from trainer.demo_tasks import held_out
    from trainer.train import train

    bench = run / "bench-train"
    if not (bench / "categories.csv").exists():
        tmp = run / "bench-train.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        generate_benchmark(
            tmp,
            seed=config.pretrain.seed + 1,
            n_concepts=config.bench_concepts,
            photos_per_concept=config.bench_photos,
            accept=lambda c: not held_out(c),
        )
        tmp.rename(bench)
    # `rrg.seed=N` (the build's seed by default) runs another RRG stage on the same base and benchmark; every
    # `rrg.*` value is read as `TrainConfig` reads an override, and an unknown key is one `ConfigError`.
    settings = {"seed": config.pretrain.seed, **config.rrg}
    train_config = from_mapping(
        {
            "base": str(base),
            "data_root": str(bench),
            "categories": str(bench / "categories.csv"),
            "out_dir": str(run / "rrg"),
            "device": "cpu",
            "lookalikes": str(bench / LOOKALIKES) if config.lookalike_games else "",
            **settings,
        }
    )
    log(f"RRG stage: {train_config.steps} steps in {train_config.out_dir}")
    return train(train_config)


def build(config: BuildConfig, run: Path, log=print) -> dict:
    """All stages; returns the build record (also written to `run/build.json`)."""
    base, timings = pretrain_phases(config, run, log)
    return finish(config, run, base, timings, log)


def pretrain_phases(config: BuildConfig, run: Path, log=print) -> tuple[Path, dict[str, float]]:
    """Stage A + B1 (`run/pretrain`) and B2 (`run/listener`); returns the last phase's HF folder and the
    phases' times. A phase whose `hf/` is complete is skipped (also one trained on another machine)."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    base = pretrain(config.pretrain, run / "pretrain", log=log)
    timings = {"pretrain_s": round(time.monotonic() - start, 1)}
    if config.listener is not None:
        start = time.monotonic()
        base = pretrain(replace(config.listener, warm_start=str(base)), run / "listener", log=log)
        timings["listener_s"] = round(time.monotonic() - start, 1)
    return base, timings


def shipped_base(config: BuildConfig, run: Path, model_dir: Path = SHIPPED) -> Path:
    """`run/shipped-base/hf`: the shipped base (stage A + B1 + B2) read back out of its f16 GGUF pair
    (`trainer.gguf_import`: the f16 weights, widened exactly; config and tokenizer from `config.pretrain`'s seeded
    `init`), so the stages after pre-training can be tried again without the build machine's folders. A build
    from nothing trains RRG on the f32 base this is the rounding of: re-run so with the shipped settings, the
    RRG stage ended with the same rewards and a loss equal to 5 digits, not bit for bit (README)."""
    from trainer.demo_model import init_model
    from trainer.gguf_import import hf_from_gguf

    folder = Path(run) / "shipped-base"
    final = folder / "hf"
    if not (final / "config.json").exists():
        hf_from_gguf(model_dir / TEXT_NAME, model_dir / MMPROJ_NAME, init_model(config.pretrain, folder), final)
    return final


def finish(
    config: BuildConfig,
    run: Path,
    base: Path,
    timings: dict[str, Any],
    log=print,
    *,
    base_text: Path | None = None,
) -> dict:
    """The stages after pre-training, on the pre-trained HF folder `base`. `base_text`: its f16 text GGUF where it
    exists already (the shipped one, for `shipped_base`); else `base` is converted."""
    from trainer.export import export_run

    start = time.monotonic()
    rrg_dir = rrg_stage(config, run, base, log)
    timings["rrg_s"] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    exported = export_run(rrg_dir, quant=())
    timings["export_s"] = round(time.monotonic() - start, 1)
    last = run / "listener" if (run / "listener" / "metrics.jsonl").exists() else run / "pretrain"
    evals = [r for r in read_metrics(last) if "identification" in r]
    record = {
        "config": json.loads(json.dumps(asdict(config))),
        "timings": timings,
        "pretrain_final": evals[-1] if evals else {},
        "rrg_final": (read_metrics_rrg(rrg_dir) or [{}])[-1],
        "base_hf": str(base),
        "from_shipped": base_text is not None,
        "text": str(exported.text),
        "mmproj": str(exported.mmproj),
        "base_text": str(base_text or _base_gguf(base, run)),
        "lora": str(exported.lora),
        "machine": machine(),
    }
    (run / "build.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _base_gguf(base: Path, run: Path) -> Path:
    """The pre-trained (not RRG-trained) model as an f16 GGUF: the shipped base and the frozen listener."""
    from trainer.gguf import convert

    dest = run / f"base-gguf-{base.parent.name}"  # one per pre-training phase
    if not (dest / "base-f16.gguf").exists():
        convert(base, dest, "f16", name="base", fallback_pre="qwen2")
    return dest / "base-f16.gguf"


def read_metrics_rrg(rrg_dir: Path) -> list[dict]:
    path = Path(rrg_dir) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def ship(run: Path, dest: Path = SHIPPED, *, speaker_only: bool = True) -> Path:
    """Copy the base GGUF pair and the RRG LoRA into `dest` with `manifest.json`; returns the manifest path.

    `speaker_only`: the runtime applies the LoRA to describing only (the listener stays the base, as in
    training); otherwise to every call.
    """
    from trainer.cache import package_version, toolchain_versions

    run = Path(run)
    record = json.loads((run / "build.json").read_text())
    roles = {"text": (record["base_text"], TEXT_NAME), "mmproj": (record["mmproj"], MMPROJ_NAME),
             "lora": (record["lora"], LORA_NAME)}  # fmt: skip
    dest.mkdir(parents=True, exist_ok=True)
    for src, name in roles.values():
        shutil.copyfile(src, dest / name)
    manifest = {
        "name": "rrg-demo",
        "about": "A Qwen2-VL-architecture model trained from scratch on the demo world (rrg_local/demo), then "
        "RRG-trained as a speaker; built by `rrg-train demo-model`. It knows only the demo world.",
        "image_max_tokens": IMAGE_MAX_TOKENS,
        "lora_speaker_only": speaker_only,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build": {k: record[k] for k in ("config", "timings", "pretrain_final", "rrg_final")},
        # Beside the toolchain: the photo renderer's packages (the pixels every stage trains on), and the machine.
        "versions": toolchain_versions() | {name: package_version(name) for name in ("pillow", "numpy")},
        "machine": record.get("machine", "not recorded"),
        "files": {
            role: {"path": name, "bytes": (dest / name).stat().st_size, "sha256": file_sha256(dest / name)}
            for role, (_, name) in roles.items()
        },
    }
    path = dest / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def config_with(pairs: tuple[str, ...]) -> BuildConfig:
    """`key=value` overrides: `pretrain.steps=100`, `rrg.steps=10`, `rrg.seed=1`, `bench_concepts=12`; an `rrg.*`
    key that is no `TrainConfig` field (or one the build sets, `RRG_FIXED`) or a value of the wrong type is a
    `ConfigError` here, before any stage runs."""
    import typing

    from trainer.config import ConfigError, TrainConfig, coerce
    from trainer.demo_model import with_overrides

    hints = typing.get_type_hints(TrainConfig)
    open_keys = sorted(set(hints) - RRG_FIXED)
    config = BuildConfig()
    pre, listener, rrg, top = [], [], dict(config.rrg), {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key.startswith("pretrain."):
            pre.append(f"{key.removeprefix('pretrain.')}={value}")
        elif key.startswith("listener."):
            listener.append(f"{key.removeprefix('listener.')}={value}")
        elif key.startswith("rrg."):
            name = key.removeprefix("rrg.")
            if name not in hints or name in RRG_FIXED:
                raise ConfigError(f"rrg.{name}: not an RRG setting the build leaves open ({', '.join(open_keys)})")
            rrg[name] = coerce(f"rrg.{name}", value, hints[name])
        else:
            top[key] = type(getattr(config, key))(value)
    phase2 = with_overrides(config.listener, listener) if config.listener is not None else None
    return replace(config, pretrain=with_overrides(config.pretrain, pre), listener=phase2, rrg=rrg, **top)
