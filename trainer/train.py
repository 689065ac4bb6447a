"""The RRG self-play loop: a LoRA speaker trained with GRPO against the frozen base as listener.

`rrg-train train` calls `train(config)`; `bench/train_step.py` calls `setup` and `play_step` directly. Data:
`trainer.data` loads the benchmark, keeps the train split (by concept) and mines one game per photo with
`pixel_embedding`, a cheap downsampled-RGB vector; real runs can plug in the model's vision tower (or any
`path -> unit vector` function) through `setup(..., embed=...)`. With `db` set, the data is the user's
rrg-local library instead (`load_from_db`): confirmed photos train too, and rejected ones become the hard
negatives of their concept's games. One step plays `targets_per_step` games:
the speaker (adapter on) samples G descriptions of each target, the listener (adapter off, `listener_p_yes`;
with `listener = "caption"`, `listener_caption_logprobs` softmaxed over the candidates; "caption_text": the same
on the descriptions as the runtime re-reads them, `caption_rollout`; "both": yes_no and caption_text, their game
rewards averaged) scores every description against the K candidates, the reward is the game reward plus the
weighted format and length rewards, and `trainer.grpo.grpo_step` updates the adapter once over all games.
With `game = "description"` the game is played tagging's way round (`description_games`): the speaker also
describes each negative's concept greedily (`rival_descriptions`), and each candidate photo picks among the
sampled description and those (by P(Yes), or with `caption_text` by each one's caption likelihood per token); the
rivals' descriptions and their listener calls count in `t_listener`. A game none of whose negatives shows a
concept (photos a person rejected, in `db` mode) has no rival and is played the photo way.

The run folder is `trainer.export`'s layout: `run.json` (base, name, pre_tokenizer, plus the config) and
`adapter/` (peft `save_pretrained`), plus `state.pt` (optimizer, step, RNG states) and `metrics.jsonl`.
A run folder that has `state.pt` is resumed: same config (bar `RESUMABLE_FIELDS`), step count continued.

Multi-process (data parallel, one process per GPU): launched by `torchrun --nproc_per_node N -m trainer.cli train
--config FILE.yaml` or `accelerate launch --num_processes N -m trainer.cli train --config FILE.yaml`, `train`
builds an `accelerate.Accelerator` (its device replaces `config.device`) and prepares the peft model (DDP) and
optimizer. Each process plays its contiguous share of the step's `targets_per_step` games (which must divide
evenly), DDP averages the LoRA gradients, and process 0 alone writes metrics (reduced over all games, in the
single-process order), checkpoints and the progress bar. One process (no `WORLD_SIZE` > 1) runs exactly as before.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rrg_local.vlm.prompts import CAPTION_OPEN
from trainer import grpo
from trainer.config import RESUMABLE_FIELDS, ConfigError, TrainConfig
from trainer.data import Embed, Game, load_examples, load_from_db, load_lookalikes, mine_games, split_by_concept
from trainer.fast_vision import speed_up_vision
from trainer.rewards import binary_reward, combine, contrastive_reward, format_reward, length_penalty

METRIC_KEYS = (
    "step", "reward_mean", "reward_std", "game_reward", "listener_acc", "format", "kl", "loss", "grad_norm",
    "completion_len", "t_sample", "t_listener", "t_update",
)  # fmt: skip


def pixel_embedding(path: Path, size: int = 16) -> np.ndarray:
    """A unit vector from the photo's `size` x `size` RGB thumbnail, mean-centred (cheap hard-example mining)."""
    from PIL import Image

    with Image.open(path) as img:
        vec = np.asarray(img.convert("RGB").resize((size, size)), dtype=np.float32).ravel()
    vec = vec - vec.mean()
    return vec / max(float(np.linalg.norm(vec)), 1e-8)


def grpo_config(config: TrainConfig) -> grpo.GRPOConfig:
    keys = ("group_size", "max_new_tokens", "temperature", "lr", "clip_eps", "kl_beta", "lora_r", "lora_alpha")
    return grpo.GRPOConfig(**{k: getattr(config, k) for k in keys})


def games_for_step(games: Sequence[Game], step: int, per_step: int, seed: int) -> list[Game]:
    """The games of 1-based `step`: a fresh seeded shuffle each epoch, so a resumed run picks the same ones."""
    orders: dict[int, list[int]] = {}
    out = []
    for i in range((step - 1) * per_step, step * per_step):
        epoch, pos = divmod(i, len(games))
        if epoch not in orders:
            orders[epoch] = list(range(len(games)))
            random.Random(seed * 1_000_003 + epoch).shuffle(orders[epoch])
        out.append(games[orders[epoch][pos]])
    return out


def resolve_device(config: TrainConfig, device: Any = None) -> tuple[Any, Any]:
    """The torch device (`device` when given, e.g. the accelerator's; else `config.device`) and dtype."""
    import torch

    if device is not None:
        device = str(device)
    else:
        device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    if config.dtype == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        dtype = getattr(torch, config.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ConfigError(f"dtype {config.dtype!r} is not a torch dtype")
    return torch.device(device), dtype


@dataclass
class Session:
    """Everything one step needs: the peft model, its tokenizer and image processor, optimizer and games."""

    config: TrainConfig
    model: Any
    tokenizer: Any
    processor: Any
    optimizer: Any
    games: list[Game]
    accelerator: Any = None  # multi-process runs: the `accelerate.Accelerator` (None: one process)
    wrapped: Any = None  # multi-process runs: the DDP-wrapped `model` (forward + backward sync gradients)
    photos: dict[str, list[Path]] = field(default_factory=dict)  # each training concept's photos, in data order


def load_model(config: TrainConfig, adapter: Path | None, device: Any = None) -> Any:
    """The base in the configured device/dtype, wrapped in a fresh LoRA or the saved `adapter` (trainable)."""
    from transformers import AutoModelForImageTextToText

    device, dtype = resolve_device(config, device)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if config.load_in_4bit:
        import importlib.util

        if device.type != "cuda" or importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("load_in_4bit needs a CUDA device and bitsandbytes installed")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": device}
    model = AutoModelForImageTextToText.from_pretrained(config.base, **kwargs)
    if not config.load_in_4bit:
        model = model.to(device, dtype)
    speed_up_vision(model)
    if config.gradient_checkpointing:
        # transformers >= 5.2x renamed it (the old name warns); older 5.x has only the old one.
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
        model.enable_input_require_grads()
    if adapter is None:
        return grpo.add_lora(model, grpo_config(config))
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter, is_trainable=True)


def setup(
    config: TrainConfig, adapter: Path | None = None, embed: Embed = pixel_embedding, device: Any = None
) -> Session:
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer

    config.check_data_source()
    negatives: dict[str, list[Path]] = {}
    if config.db:
        examples, negatives = load_from_db(Path(config.db))
    else:
        examples = load_examples(Path(config.data_root), Path(config.categories))
    train_split, _ = split_by_concept(examples, config.test_fraction, config.seed)
    lookalikes = load_lookalikes(Path(config.lookalikes)) if config.lookalikes else None
    games = mine_games(
        train_split, embed, k=config.K, seed=config.seed, extra_negatives=negatives, lookalikes=lookalikes
    )
    torch.manual_seed(config.seed)
    model = load_model(config, adapter, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    processor = AutoImageProcessor.from_pretrained(config.base)
    photos: dict[str, list[Path]] = {}
    for example in train_split:
        photos.setdefault(example.concept, []).append(Path(example.path))
    return Session(config, model, tokenizer, processor, optimizer, games, photos=photos)


def _open(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


class _Synced:
    """The peft model for `grpo` (attributes, generate, adapter switch), whose calls go through its DDP wrapper."""

    def __init__(self, wrapped: Any, model: Any) -> None:
        self._wrapped, self._model = wrapped, model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped(*args, **kwargs)


def softmax(scores: Sequence[float]) -> list[float]:
    """The scores as probabilities (a numerically safe softmax).

    >>> [round(p, 3) for p in softmax([0.0, 0.0, -1e9])]
    [0.5, 0.5, 0.0]
    """
    x = np.asarray(scores, dtype=np.float64)
    z = np.exp(x - x.max())
    return (z / z.sum()).tolist()


def description_games(
    own: Sequence[Sequence[float]],
    rivals: Sequence[Sequence[float]],
    owners: Sequence[int | None],
    game_fn: Any = contrastive_reward,
) -> tuple[list[float], list[float]]:
    """The game played tagging's way round: each candidate photo picks the description of its concept.

    `own[g][k]`: P(Yes | candidate photo k, sampled description g); `rivals[k][r]`: P(Yes | photo k, rival
    description r), the negatives' concepts described by the speaker; `owners[k]`: whose description photo k's
    concept has, -1 for the sampled one (the target's photo), r for rival r, None for a photo of no described
    concept (left out). Per sampled description: (its game reward, `game_fn` over the descriptions and averaged
    over the photos; the share of photos whose pick is their own description).

    >>> own = [[0.9, 0.2, 0.1], [0.9, 0.9, 0.1]]  # the second description also fits photo 1 (rival 0's)
    >>> rivals = [[0.3, 0.2], [0.6, 0.1], [0.2, 0.8]]
    >>> rewards, hits = description_games(own, rivals, [-1, 0, 1])
    >>> [round(r, 3) for r in rewards], hits
    ([0.679, 0.457], [1.0, 0.6666666666666666])
    """
    scored = [k for k, owner in enumerate(owners) if owner is not None]
    rewards, hits = [], []
    for row in own:
        games = [([row[k], *rivals[k]], 0 if owners[k] == -1 else owners[k] + 1) for k in scored]
        rewards.append(float(np.mean([game_fn(probs, answer) for probs, answer in games])))
        hits.append(float(np.mean([int(np.argmax(probs)) == answer for probs, answer in games])))
    return rewards, hits


def rival_descriptions(
    session: Session, game: Game, images: Sequence[Any]
) -> tuple[list[list[float]], list[int | None]]:
    """The other side of `description_games` for one game (`images`: its candidates' photos, opened): the
    `rivals` matrix and `owners`.

    Each negative candidate of a known concept is described by the speaker as it is now (adapter on, greedy),
    from another photo of that concept where the training data has one (so the description cannot win its
    photo by naming that photo's scene); the listener then reads every candidate photo against every rival: its
    P(Yes), or with `listener = "caption_text"` the rival's caption likelihood per token as a probability (the
    geometric mean of its tokens' probabilities), as `play_step` reads the sampled descriptions.
    """
    cfg, model, tok, proc = session.config, session.model, session.tokenizer, session.processor
    owners: list[int | None] = []
    texts: list[tuple[str, str]] = []  # (rival description, its concept's category)
    for k, candidate in enumerate(game.candidates):
        if k == game.answer:
            owners.append(-1)
            continue
        if not candidate.concept or candidate.concept == game.target.concept:
            owners.append(None)
            continue
        others = [p for p in session.photos.get(candidate.concept, []) if p != Path(candidate.path)]
        photo = others[0] if others else Path(candidate.path)
        prompt = grpo.encode_prompt(model, tok, proc, _open(photo), grpo.speaker_chat(candidate.category))
        owners.append(len(texts))
        texts.append((grpo.greedy(model, tok, prompt, cfg.max_new_tokens), candidate.category))
    if cfg.listener == "caption_text":  # the rivals of one category in one rollout (one prompt), read per photo
        groups = {c: [r for r, (_, cat) in enumerate(texts) if cat == c] for _, c in texts}
        rollouts = {c: grpo.text_rollout(tok, [texts[r][0] for r in rs]) for c, rs in groups.items()}
        rivals = [[0.0] * len(texts) for _ in images]
        for img, row in zip(images, rivals, strict=True):
            for c, rs in groups.items():
                scores = grpo.listener_caption_logprobs(
                    model, tok, proc, img, rollouts[c], c, CAPTION_OPEN, per_token=True
                )
                for r, score in zip(rs, scores, strict=True):
                    row[r] = math.exp(score)
    else:
        rivals = [[grpo.listener_p_yes(model, tok, proc, img, text, category) for text, category in texts]
                  for img in images]  # fmt: skip
    return rivals, owners


def play_step(session: Session, games: Sequence[Game]) -> dict[str, float]:
    """Sample, listen, reward and update once over `games`; returns the step's metrics (without `step`).

    In a multi-process session `games` is this process's share; the update's gradients are averaged over the
    processes and the metrics returned (on every process) are those of all the processes' games together.
    """
    cfg, model, tok, proc = session.config, session.model, session.tokenizer, session.processor
    gcfg = grpo_config(cfg)
    game_fn = contrastive_reward if cfg.reward == "contrastive" else binary_reward
    shape_fn = combine((format_reward, cfg.format_weight), (length_penalty, cfg.length_weight))
    shape_columns = {"detailed_min_words": cfg.detailed_min_words}
    times = {"t_sample": 0.0, "t_listener": 0.0}
    rollouts, rewards, game_rewards, formats, hits, lengths = [], [], [], [], [], []
    trained = model if session.wrapped is None else session.wrapped
    trained.eval()  # sampling keeps its KV cache; checkpointing (train mode) is only for the update
    for game in games:
        start = time.perf_counter()
        prompt = grpo.encode_prompt(model, tok, proc, _open(game.target.path), grpo.speaker_chat(game.target.category))
        rollout = grpo.sample(model, prompt, gcfg)
        texts = [
            tok.decode(ids[mask.bool()], skip_special_tokens=True)
            for ids, mask in zip(rollout.completions, rollout.mask, strict=True)
        ]
        times["t_sample"] += time.perf_counter() - start
        start = time.perf_counter()
        images = [_open(c.path) for c in game.candidates]
        listeners = []  # per listener: per sampled description, its probability of each candidate
        if cfg.listener in ("caption", "caption_text", "both"):
            scored, prefix = rollout, ""
            if cfg.listener != "caption":
                scored, prefix = grpo.caption_rollout(tok, rollout, texts), CAPTION_OPEN
            tagging = cfg.game == "description"  # each photo compares descriptions: per token, not summed
            caption = [grpo.listener_caption_logprobs(model, tok, proc, img, scored, game.target.category, prefix,
                                                      per_token=tagging) for img in images]  # fmt: skip
            if tagging:  # the geometric mean of the tokens' probabilities: how well the description fits the photo
                listeners.append([[math.exp(lps[g]) for lps in caption] for g in range(len(texts))])
            else:
                listeners.append([softmax([lps[g] for lps in caption]) for g in range(len(texts))])
        if cfg.listener in ("yes_no", "both"):
            listeners.append(
                [
                    [grpo.listener_p_yes(model, tok, proc, img, text, game.target.category) for img in images]
                    for text in texts
                ]
            )
        rivals, owners = rival_descriptions(session, game, images) if cfg.game == "description" else ([], [])
        if any(owner is not None and owner >= 0 for owner in owners):
            played, game_hits = description_games(listeners[0], rivals, owners, game_fn)
        else:  # the photo game, also for a game none of whose negatives has a concept to describe
            # With two listeners the game's reward is their rewards' mean, and the pick is from their mean belief.
            played = [float(np.mean([game_fn(ps[g], game.answer) for ps in listeners])) for g in range(len(texts))]
            probs = [list(np.mean([ps[g] for ps in listeners], axis=0)) for g in range(len(texts))]
            game_hits = [float(max(range(len(p)), key=p.__getitem__) == game.answer) for p in probs]
        times["t_listener"] += time.perf_counter() - start
        shaped = shape_fn(texts, **shape_columns)
        rollouts.append(rollout)
        rewards.append([g + s for g, s in zip(played, shaped, strict=True)])
        game_rewards += played
        formats += format_reward(texts)
        hits += game_hits
        lengths += [float(n) for n in rollout.mask.sum(dim=1).tolist()]
    start = time.perf_counter()
    trained.train(cfg.gradient_checkpointing)
    update_model = model if session.wrapped is None else _Synced(session.wrapped, model)
    stats = grpo.grpo_step(update_model, session.optimizer, rollouts, rewards, gcfg)
    times["t_update"] = time.perf_counter() - start
    local = {"rewards": [r for group in rewards for r in group], "game_rewards": game_rewards, "hits": hits,
             "formats": formats, "lengths": lengths, "stats": stats, "times": times}  # fmt: skip
    parts = [local] if session.accelerator is None else _all_gather(local)
    flat = np.array([r for part in parts for r in part["rewards"]], dtype=np.float64)

    def mean(key: str) -> float:
        return float(np.mean([x for part in parts for x in part[key]]))

    stats = {k: float(np.mean([part["stats"][k] for part in parts])) for k in stats} if len(parts) > 1 else stats
    times = {k: max(part["times"][k] for part in parts) for k in times}  # the slowest process's time
    return {
        "reward_mean": float(flat.mean()),
        "reward_std": float(flat.std()),
        "game_reward": mean("game_rewards"),
        "listener_acc": mean("hits"),
        "format": mean("formats"),
        **stats,
        "completion_len": mean("lengths"),
        **times,
    }


def _all_gather(obj: Any) -> list[Any]:
    """`obj` from every process, in rank order (a collective: every process must call it)."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def games_for_process(games: Sequence[Game], rank: int, world: int) -> list[Game]:
    """Process `rank`'s contiguous share of a step's games (`len(games)` divisible by `world`).

    >>> games_for_process(list("abcdef"), 1, 3)
    ['c', 'd']
    """
    if len(games) % world:
        raise ConfigError(f"targets_per_step ({len(games)}) must be a multiple of the process count ({world})")
    share = len(games) // world
    return list(games[rank * share : (rank + 1) * share])


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_record(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """`run.json`: what `trainer.export.read_run` needs, plus the whole config for resuming."""
    base = str(Path(config.base).resolve())
    return {"base": base, "name": config.name or run_dir.name, "pre_tokenizer": config.pre_tokenizer,
            "config": config.as_dict()}  # fmt: skip


def save_checkpoint(session: Session, run_dir: Path, step: int, rng_ranks: list | None = None) -> None:
    """adapter/, run.json, then state.pt last (it marks the checkpoint complete); each replaced atomically.

    `rng_ranks`: every process's RNG states (multi-process runs), so each one resumes its own stream.
    """
    import torch

    tmp = run_dir / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    session.model.save_pretrained(tmp)
    shutil.rmtree(run_dir / "adapter", ignore_errors=True)
    os.replace(tmp, run_dir / "adapter")
    (run_dir / ".run.json.tmp").write_text(json.dumps(run_record(session.config, run_dir), indent=2))
    os.replace(run_dir / ".run.json.tmp", run_dir / "run.json")
    state = {"step": step, "optimizer": session.optimizer.state_dict(), "rng": _rng_state()}
    if rng_ranks is not None:
        state["rng_ranks"] = rng_ranks
    torch.save(state, run_dir / ".state.pt.tmp")
    os.replace(run_dir / ".state.pt.tmp", run_dir / "state.pt")


def check_resumable(config: TrainConfig, run_dir: Path) -> None:
    saved = json.loads((run_dir / "run.json").read_text()).get("config", {})
    new = config.as_dict()
    defaults = TrainConfig().as_dict()  # a key the saved run predates had its default value
    changed = sorted(k for k in new if k not in RESUMABLE_FIELDS and saved.get(k, defaults[k]) != new[k])
    if changed:
        raise ConfigError(f"{run_dir} was trained with a different config ({', '.join(changed)}); use a new out_dir")


def read_metrics(run_dir: Path, upto: int | None = None) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [r for r in rows if upto is None or r["step"] <= upto]


def plot_rewards(run_dir: Path, rows: Sequence[dict]) -> Path | None:
    """`reward.png` (mean reward and listener accuracy per step) when matplotlib is installed; else nothing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["reward_mean"] for r in rows], label="reward")
    ax.plot(steps, [r["listener_acc"] for r in rows], label="listener accuracy")
    ax.set_xlabel("step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "reward.png")
    plt.close(fig)
    return run_dir / "reward.png"


def _accelerator(config: TrainConfig) -> Any:
    """An `accelerate.Accelerator` when launched as several processes (torchrun / accelerate launch), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=config.device == "cpu" or not torch.cuda.is_available())


def _dump_trainable(session: Session) -> None:
    """Testing hook: with `RRG_TRAIN_DUMP_TRAINABLE=DIR`, each process saves its trainable tensors to DIR/rankN.pt."""
    import torch

    folder = os.environ.get("RRG_TRAIN_DUMP_TRAINABLE")
    if not folder:
        return
    rank = 0 if session.accelerator is None else session.accelerator.process_index
    params = {n: p.detach().cpu().clone() for n, p in session.model.named_parameters() if p.requires_grad}
    Path(folder).mkdir(parents=True, exist_ok=True)
    torch.save(params, Path(folder) / f"rank{rank}.pt")


def train(config: TrainConfig, embed: Embed = pixel_embedding) -> Path:
    """Train (or resume) the run in `config.out_dir` up to `config.steps`; returns the run folder."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not config.out_dir:
        raise ConfigError("out_dir is required")
    accelerator = _accelerator(config)
    rank, world = (0, 1) if accelerator is None else (accelerator.process_index, accelerator.num_processes)
    if config.targets_per_step % world:
        raise ConfigError(f"targets_per_step ({config.targets_per_step}) must be a multiple of the process count "
                          f"({world})")  # fmt: skip
    main = rank == 0
    run_dir = Path(config.out_dir)
    resuming = (run_dir / "state.pt").is_file()
    if resuming:
        check_resumable(config, run_dir)
    if accelerator is not None:
        accelerator.wait_for_everyone()  # every process has looked for state.pt before process 0 writes
    run_dir.mkdir(parents=True, exist_ok=True)
    device = None if accelerator is None else accelerator.device
    session = setup(config, run_dir / "adapter" if resuming else None, embed, device)
    done = 0
    if resuming:
        state = torch.load(run_dir / "state.pt", weights_only=False, map_location="cpu")
        session.optimizer.load_state_dict(state["optimizer"])
        ranks = state.get("rng_ranks")
        _set_rng_state(ranks[rank] if ranks is not None and len(ranks) == world else state["rng"])
        done = int(state["step"])
    if accelerator is not None:
        session.accelerator = accelerator
        session.wrapped, session.optimizer = accelerator.prepare(session.model, session.optimizer)
    rows = read_metrics(run_dir, upto=done) if main else []  # drop metrics of steps after the last checkpoint
    if main:
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = (TextColumn("step {task.completed}/{task.total}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, disable=not main) as progress:
        task = progress.add_task("train", total=config.steps, completed=done, info="")
        for step in range(done + 1, config.steps + 1):
            games = games_for_step(session.games, step, config.targets_per_step, config.seed)
            metrics = {"step": step, **play_step(session, games_for_process(games, rank, world))}
            rows.append(metrics)
            if main:
                with (run_dir / "metrics.jsonl").open("a") as fh:
                    fh.write(json.dumps(metrics) + "\n")
            info = f"reward {metrics['reward_mean']:.3f} acc {metrics['listener_acc']:.2f}"
            progress.update(task, completed=step, info=info)
            if step % config.save_every == 0 or step == config.steps:
                rng_ranks = None if accelerator is None else _all_gather(_rng_state())
                if main:
                    save_checkpoint(session, run_dir, step, rng_ranks)
                    plot_rewards(run_dir, rows)
                if accelerator is not None:
                    accelerator.wait_for_everyone()
    _dump_trainable(session)
    if accelerator is not None:
        accelerator.end_training()
    return run_dir
