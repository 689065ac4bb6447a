"""Pre-train the demo model from scratch on the demo world: a small Qwen2-VL that describes, recognizes, identifies.

`rrg-train demo-model --out DIR` (or `pretrain(DemoConfig(...), DIR)`) builds a seeded tiny Qwen2-VL whose
tokenizer knows the world's words (`trainer.tiny.build_tiny` with `demo_tasks.corpus_lines`), then trains it
on samples drawn on the fly (`trainer.demo_tasks`: the runtime's prompts, the runtime's answer formats), with
the loss on answer tokens only. The curriculum shifts the task mix from describing (which teaches the vision
tower the attributes) towards the listener roles (recognition, identification), and their negatives from
other objects towards look-alikes one attribute apart.

Every `eval_every` steps a fixed held-out set (concepts never trained on) is scored the way the runtime reads
answers: the decision token's option probabilities for recognition and identification, teacher-forced token
accuracy for descriptions. Rows go to `DIR/metrics.jsonl`, curves to `DIR/curves.png`; `DIR/checkpoint/`
(model, optimizer, step, RNG) makes an interrupted run resume exactly; `DIR/hf/` is the final model, the
base that `rrg-train train` (RRG) and `rrg-train export` take.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from trainer import demo_tasks
from trainer.demo_vision import VisionConfig, train_vision
from trainer.fast_vision import attention_kernel, speed_up_vision
from trainer.hardware import native_bf16
from trainer.prefetch import Prefetcher
from trainer.tiny import TinyConfig, build_tiny

# The demo model's shape: ~3.6 M parameters, 112 px photos = 16 image tokens.
DEMO_SHAPE = TinyConfig(
    seed=0,
    bpe_vocab=1200,
    hidden_size=256,
    intermediate_size=768,
    num_layers=3,
    num_heads=4,
    num_kv_heads=2,
    vision_embed_dim=128,
    vision_depth=3,
    vision_heads=4,
    min_pixels=112 * 112,
    max_pixels=112 * 112,
    tie_word_embeddings=True,
)


@dataclass(frozen=True)
class DemoConfig:
    """Everything that shapes the demo model; the run directory records it in `config.json`."""

    shape: TinyConfig = DEMO_SHAPE
    # Stage A (`trainer.demo_vision`; steps=0 skips it). The shipped model's: fresh batches of 64. A bank of 16k
    # photos in batches of 16 (`bank`, `held_out`) learned faster per second (held-out pattern 0.55, mark 0.64
    # after 12000 steps), but the listener built on it ignored the photo (P(Yes) flat): not the default.
    vision: VisionConfig = VisionConfig(steps=1000)
    vision_lr_scale: float = 0.3  # stage B trains the tower at this fraction of `lr`
    steps: int = 1500
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    threads: int = 2
    photo_size: int = 224
    # Task mix (speaker, recognition, identification, question) at the start and at the end; linear between.
    mix_start: tuple[float, float, float, float] = (0.35, 0.4, 0.17, 0.08)
    mix_end: tuple[float, float, float, float] = (0.2, 0.5, 0.25, 0.05)
    # The speaker task's share of casual descriptions (`demo_tasks.describe`): one or two attributes left out, the
    # scene or pose added. At 0.5 (B1's) greedy decoding follows the one complete template (its descriptions
    # mentioned context in 8 % of held-out photos); at 0.85 (the shipped build's B2, `BuildConfig.listener`) the
    # untrained speaker writes as real models do (context in 90 %), and only the reference game teaches it which
    # attributes tell a concept from its look-alikes.
    speaker_casual: float = 0.5
    hard_start: float = 0.2  # share of look-alike negatives
    hard_end: float = 0.75
    eval_every: int = 100
    eval_size: int = 64  # per task
    checkpoint_every: int = 100
    minimal_pairs: bool = True  # recognition trains on minimal pairs (`demo_tasks.recognition_pairs`)
    decision_weight: float = 3.0  # the loss on a decision token (Yes/No, A/B/None) counts this many times
    # The decision's loss added to the mean of the answer's other tokens instead of averaged with them. Averaged,
    # a positive recognition sample (whose prompt's description is also a target, ~25 tokens) weighs its Yes
    # ~5x less than a negative its No: the listener's prior fell to P(Yes) ~0.24 on balanced data.
    decision_apart: bool = False
    # Recognition also trains, at each word of the prompt's description that names an attribute, the Yes/No
    # that layer `match_layer`'s output reads there (through the final norm and output head): is this word true
    # of the photo (`demo_tasks.word_checks`)? The decision then has to find a No among the words, not learn
    # every comparison through one token (where every B2 without it stayed at chance but for colour and
    # category). This many times the mean over a sample's words; 0: off (the previous model's recipe; the build
    # sets 1 for B1 and B2, `demo_build.BuildConfig`).
    match_weight: float = 0.0
    match_layer: int = 2
    # A false word's check weighs this many true ones' in its sample's mean (a look-alike's negative has one false
    # word among ~12). 6 in B2 did not help: word-check AUC at mark 0.44, part 0.65 (at 1: 0.50 / 0.62, 60
    # held-out concepts, `bench/listener_probe.py --hf`); at the mark word no layer's output tells a matching
    # mark from another (`bench/match_probe.py`: 0.46-0.50), where the pattern word's does from layer 2 (0.90).
    match_false_weight: float = 1.0
    micro_batches: int = 2  # the batch, sorted by task, in this many passes (less padding, same gradient)
    # The passes cut by token count instead (`Encoder.batches`): on the shipped B2's batches, 2 passes read 7336
    # padded tokens a step instead of 8500 (3: 6568), for the same gradient up to rounding; off reproduces the
    # shipped build's passes.
    length_batches: bool = False
    # bf16 autocast where the hardware computes bf16 (`trainer.hardware.native_bf16`: 1.75x faster on a CPU with
    # AVX512-BF16, loss equal to 1e-5); elsewhere f32: emulated bf16 was 1.5-7.6x slower than f32 there.
    bf16: bool = True
    # `trainer.fast_vision`: the tower's patch embedding as a matrix product, its attention batched over photos
    # of one size, the math SDPA kernel on a CPU: a stage-A step 2.5-3.6x and a B step 1.1-1.2x faster there
    # (`bench/fast_forwards.py`, `bench/stage_a.py --stock`).
    # The same model up to float rounding; false reproduces the shipped build's summation order bit for bit.
    fast_forwards: bool = True
    # Stage B's language model through `torch.compile` (inductor, dynamic shapes), in place so the saved weights
    # keep their names: a whole B2 step 0.86x the eager one's on a 2-core CPU (its forward and backward 0.80x,
    # `bench/fast_forwards.py --compile`), after 1-1.5 min of compiling per process. Other kernels, other
    # rounding: off reproduces the shipped build.
    compile: bool = False
    device: str = "cpu"  # where the model trains ("cuda" on a GPU machine); the photos render on the CPU
    # 0: batches drawn here from one random stream (the shipped build's). N >= 1: step k's batch drawn from its
    # own seed (`step_rng`) by N worker processes (`trainer.prefetch`): other samples than 0's, the same for
    # every N, and a resumed run needs no stream state. For machines with cores to spare (a GPU machine).
    workers: int = 0
    time_limit_s: float = field(default=0.0, metadata={"help": "stop (and save) after this long; 0: no limit"})
    # A later phase starts from an earlier phase's model folder (its own schedule, no vision stage).
    warm_start: str = ""


TASKS = ("speaker", "recognition", "identification", "question")
# What each task's share draws in training: recognition as minimal pairs (evaluation keeps single samples).
TRAIN_BUILDER = {"recognition": "recognition_pairs"}


def uses_bf16(config: DemoConfig) -> bool:
    """Whether a run of `config` trains under bf16 autocast: asked for, and native where it trains."""
    return config.bf16 and native_bf16(config.device)


def schedule(config: DemoConfig, step: int) -> tuple[dict[str, float], float]:
    """The task mix and the share of hard negatives at `step`.

    >>> mix, hard = schedule(DemoConfig(steps=100), 50)
    >>> round(mix["speaker"], 3), round(hard, 3)
    (0.275, 0.475)
    """
    t = min(1.0, step / max(1, config.steps))
    mix = {k: a + (b - a) * t for k, a, b in zip(TASKS, config.mix_start, config.mix_end, strict=True)}
    return mix, config.hard_start + (config.hard_end - config.hard_start) * t


def draw_batch(rng: random.Random, config: DemoConfig, step: int, *, evaluation: bool = False) -> list:
    mix, hard = schedule(config, step)
    out: list = []
    while len(out) < config.batch:
        task = rng.choices(TASKS, weights=[mix[t] for t in TASKS])[0]
        if not evaluation and config.minimal_pairs:
            task = TRAIN_BUILDER.get(task, task)
        got = _sample(task, rng, config, hard, evaluation)
        out.extend(got if isinstance(got, list) else [got])
    return out[: config.batch]


def step_rng(seed: int, step: int) -> random.Random:
    """The random stream of `step`'s batch with `workers`: its own, so any worker can draw it."""
    return random.Random(f"stage-b:{seed}:{step}")


def step_batches(config: DemoConfig, first: int, *, start: int = 0, stride: int = 1):
    """The batches of steps `first + start`, `first + start + stride`, ... below `config.steps`, each from
    `step_rng`: what a `Prefetcher` worker draws for `pretrain` with `config.workers`."""
    for step in range(first + start, config.steps, stride):
        yield draw_batch(step_rng(config.seed, step), config, step)


def _sample(task: str, rng: random.Random, config: DemoConfig, hard: float, evaluation: bool):
    kw: dict[str, Any] = {"evaluation": evaluation, "size": config.photo_size}
    if task.startswith(("recognition", "identification")):
        kw["hard"] = hard
    if task == "speaker":
        kw["p_casual"] = config.speaker_casual
    return demo_tasks.BUILDERS[task](rng, **kw)


def eval_set(config: DemoConfig) -> list:
    """The fixed held-out set: `eval_size` samples per task, hard negatives at the final share."""
    rng = random.Random(10_000 + config.seed)
    return [_sample(task, rng, config, config.hard_end, True) for task in TASKS for _ in range(config.eval_size)]


class Encoder:
    """Samples -> model inputs: the chat template, image pads expanded, answer segments tokenized one by one."""

    def __init__(self, model_dir: Path):
        from transformers import AutoImageProcessor, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.proc = AutoImageProcessor.from_pretrained(model_dir)
        self.pad = self.tok.convert_tokens_to_ids("<|endoftext|>")
        self.end = self.tok.convert_tokens_to_ids("<|im_end|>")
        self._prompts: dict[str, list[int]] = {}

    def ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def prompt_ids(self, sample, n_image: int) -> tuple[list[int], list[int], list[tuple[int, bool]]]:
        """The prompt's token ids and labels: -100, except on `sample.prompt_spans` (text of the prompt that is
        also a target, tokenized on its own; spans start with a space and end before a newline, where the
        tokenizer splits anyway, so the ids are those of the whole prompt); and `sample.checks` as (position
        of the word's last token, whether the word is true of the photo)."""
        from trainer.grpo import hf_chat

        text = self.tok.apply_chat_template(hf_chat(sample.messages), tokenize=False, add_generation_prompt=True)
        text = text.replace("<|image_pad|>", "<|image_pad|>" * n_image)
        start = text.rfind("<|vision_end|>")
        checks_text = getattr(sample, "checks_text", "")
        anchor = text.find(checks_text, start) if checks_text else -1
        ends = {anchor + b - 1: ok for a, b, ok in sample.checks} if anchor >= 0 else {}
        ids: list[int] = []
        labels: list[int] = []
        checks: list[tuple[int, bool]] = []
        base = 0  # where `text` (what is left to tokenize) starts in the whole prompt

        def add(piece: str, offset: int, trained: bool) -> None:
            enc = self.tok(piece, add_special_tokens=False, return_offsets_mapping=bool(ends))
            for i, (a, b) in enumerate(enc.offset_mapping if ends else ()):
                for char in range(offset + a, offset + b):
                    if char in ends:
                        checks.append((len(ids) + i, ends.pop(char)))
            ids.extend(enc.input_ids)
            labels.extend(enc.input_ids if trained else [-100] * len(enc.input_ids))

        for span in getattr(sample, "prompt_spans", ()):
            at = text.find(span, start)
            if at < 0:
                continue
            add(text[:at], base, False)
            add(span, base + at, True)
            text, start, base = text[at + len(span) :], 0, base + at + len(span)
        add(text, base, False)
        return ids, labels, checks

    def __call__(self, samples: Sequence, model: Any) -> dict:
        """input_ids, attention_mask, labels (-100 outside answers), pixel_values, image_grid_thw; plus
        `decision_pos`: per sample, the position whose logits choose the option (-1 where none)."""
        return self.batches(samples, model, 1)[0]

    def batches(self, samples: Sequence, model: Any, n: int) -> list[dict]:
        """`samples` encoded as `__call__` does, in `n` near-equal batches cut by token count, shortest first
        (`DemoConfig.length_batches`): each batch pads to its own longest row, so the passes read fewer pad
        tokens than any cut that ignores length. The processor runs once for all of them."""
        import torch

        px = self.proc(images=[s.image for s in samples], return_tensors="pt")
        merge = model.config.vision_config.spatial_merge_size
        rows, labels, decisions, checks = [], [], [], []
        for sample, thw in zip(samples, px["image_grid_thw"], strict=True):
            ids, lab, checked = self.prompt_ids(sample, int(thw.prod()) // merge**2)
            checks.append(checked)
            decision = -1
            for i, seg in enumerate(sample.segments):
                if i == sample.decision:
                    decision = len(ids) - 1
                seg_ids = self.ids(seg)
                ids += seg_ids
                lab += seg_ids
            ids.append(self.end)
            lab.append(self.end)
            rows.append(ids)
            labels.append(lab)
            decisions.append(decision)
        from trainer.grpo import _takes_mm_token_types

        patches = px["image_grid_thw"].prod(-1).tolist()
        starts = [0, *itertools.accumulate(patches)]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i])) if n > 1 else list(range(len(rows)))
        yes_no = (self.ids("Yes")[0], self.ids("No")[0])
        out = []
        for part in cut(order, n):
            width = max(len(rows[i]) for i in part)
            input_ids = torch.full((len(part), width), self.pad)
            label_t = torch.full((len(part), width), -100)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for row, i in enumerate(part):
                input_ids[row, : len(rows[i])] = torch.tensor(rows[i])
                label_t[row, : len(labels[i])] = torch.tensor(labels[i])
                mask[row, : len(rows[i])] = 1
            whole = len(part) == len(rows) and part == sorted(part)  # one pass in the samples' order
            pixels = px["pixel_values"]
            if not whole:
                pixels = torch.cat([pixels[starts[i] : starts[i + 1]] for i in part])
            inputs = {
                "input_ids": input_ids,
                "attention_mask": mask,
                "pixel_values": pixels,
                "image_grid_thw": px["image_grid_thw"][part],
            }
            if _takes_mm_token_types(model):
                inputs["mm_token_type_ids"] = (input_ids == model.config.image_token_id).long()
            out.append({"inputs": inputs, "labels": label_t, "decisions": [decisions[i] for i in part],
                        "checks": [checks[i] for i in part], "yes_no": yes_no})  # fmt: skip
        return out


def forward(model: Any, batch: dict, *, bf16: bool, hidden: bool = False) -> tuple:
    """`batch` (an `Encoder` output) through `model` where it is (CPU or GPU, bf16 autocast if asked): the logits
    and the labels shifted to line up with them, both on the model's device; `hidden`: also every layer's
    hidden states (index 0 the embeddings)."""
    import torch

    dev = model.device
    with attention_kernel(model), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(**{k: v.to(dev) for k, v in batch["inputs"].items()}, output_hidden_states=hidden)
    labels = batch["labels"][:, 1:].to(dev)
    return (out.logits, labels, out.hidden_states) if hidden else (out.logits, labels)


def check_logits(model: Any, batch: dict, hidden: Sequence, layer: int) -> tuple[Any, Any, list[int]]:
    """The Yes/No logits that layer `layer`'s output reads at each checked word (`Sample.checks`), through the
    model's final norm and output head; the targets (0: Yes, the word is true of the photo; 1: No) and each
    check's sample index."""
    import torch

    rows, cols, targets = [], [], []
    for i, checks in enumerate(batch.get("checks", ())):
        for pos, ok in checks:
            rows.append(i)
            cols.append(pos)
            targets.append(0 if ok else 1)
    states = hidden[layer][torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)]
    logits = model.lm_head(model.model.language_model.norm(states))[:, list(batch["yes_no"])]
    return logits.float(), torch.tensor(targets, device=logits.device), rows


def answer_loss(
    model: Any,
    batch: dict,
    *,
    bf16: bool = False,
    decision_weight: float = 1.0,
    decision_apart: bool = False,
    match_weight: float = 0.0,
    match_layer: int = 2,
    match_false_weight: float = 1.0,
) -> tuple[Any, Any]:
    """Per-sample weighted mean cross-entropy over answer tokens, shape (batch,), and the logits.

    Per sample, not per token: a yes/no answer (a handful of tokens) weighs as much as a 40-token description;
    within a sample the decision token (the option the runtime's `Choose` reads) counts `decision_weight` times,
    or, `decision_apart`, its cross-entropy times `decision_weight` is added to the mean of the other tokens (so
    it weighs the same however long the rest of the answer is). `match_weight`: each recognition sample also
    adds that times the mean cross-entropy of its word checks (`check_logits` at `match_layer`), a false word's
    weighing `match_false_weight` true ones'.
    """
    import torch
    import torch.nn.functional as F

    checked = match_weight > 0 and any(batch.get("checks", ()))
    logits, labels, *hidden = forward(model, batch, bf16=bf16, hidden=checked)
    token = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="none"
    ).view(labels.shape)
    weights = (labels != -100).float()
    apart = torch.zeros(labels.shape[0], device=token.device)
    for i, pos in enumerate(batch["decisions"]):
        if pos >= 0:  # logits at `pos` predict the option token: index `pos` in the shifted frame
            if decision_apart:
                weights[i, pos] = 0.0
                apart[i] = decision_weight * token[i, pos]
            else:
                weights[i, pos] = decision_weight
    if checked:
        check, target, rows = check_logits(model, batch, hidden[0], match_layer)
        ce = F.cross_entropy(check, target, reduction="none")
        index = torch.tensor(rows, device=ce.device)
        weight = 1.0 + (match_false_weight - 1.0) * target.float()
        total = torch.zeros(labels.shape[0], device=ce.device).index_add(0, index, ce * weight)
        count = torch.zeros(labels.shape[0], device=ce.device).index_add(0, index, weight)
        apart = apart + match_weight * total / count.clamp(min=1)
    return (token * weights).sum(1) / weights.sum(1).clamp(min=1) + apart, logits


def score(samples: Sequence, batch: dict, logits: Any, encoder: Encoder) -> list[dict]:
    """Per sample: the decision correctness (option probabilities at the decision token) and answer-token
    accuracy (teacher forced)."""
    import numpy as np

    from rrg_local.vlm.answers import option_probs

    out = []
    labels = batch["labels"]
    pred = logits[:, :-1].argmax(-1).cpu()
    for i, sample in enumerate(samples):
        row: dict[str, Any] = {"task": sample.task}
        mask = labels[i, 1:] != -100
        row["token_acc"] = float((pred[i][mask] == labels[i, 1:][mask]).float().mean())
        pos = batch["decisions"][i]
        if pos >= 0:
            firsts = [encoder.ids(o)[0] for o in sample.options]
            probs, _ = option_probs(logits[i, pos].float().cpu().numpy(), firsts)
            row["correct"] = float(int(np.argmax(probs)) == sample.label)
            row["negative"] = sample.task == "recognition" and sample.label == 1
            row["p_first"] = float(probs[0])  # recognition: P(Yes)
        out.append(row)
    return out


def open_hf(model_dir: Path, threads: int = 2) -> tuple[Any, Encoder]:
    """A demo build's HF folder (`RUN/pretrain/hf`, `RUN/listener/hf`) as (model in float32, its encoder)."""
    import torch
    from transformers import AutoModelForImageTextToText

    if not (Path(model_dir) / "config.json").exists():
        raise ValueError(f"{model_dir} is not an HF model folder (no config.json)")
    torch.set_num_threads(threads)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    speed_up_vision(model)
    return model, Encoder(model_dir)


def answer_logliks(
    model: Any, encoder: Encoder, samples: Sequence, batch_size: int = 32, *, bf16: bool = False
) -> list[float]:
    """Per sample, the log-probability (natural log, summed over tokens) of its whole answer given its prompt
    and photo: with a description as the speaker's answer, how well the photo explains that caption."""
    import torch
    import torch.nn.functional as F

    out: list[float] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(samples), batch_size):
            batch = encoder(samples[i : i + batch_size], model)
            logits, labels = forward(model, batch, bf16=bf16)
            ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                                 reduction="none").view(labels.shape)  # fmt: skip
            out += (-ce.sum(1)).tolist()
    model.train()
    return out


def evaluate(
    model: Any, encoder: Encoder, samples: Sequence, batch_size: int = 32, *, bf16: bool = False, match_layer: int = 2
) -> dict[str, float]:
    """Held-out metrics: speaker/question token accuracy, recognition accuracy on positives and negatives
    (weighted: their mean) and the AUC of its P(Yes) (what a per-concept cut can make of it, whatever the
    bias), identification accuracy; `check_auc`: the AUC of the Yes/No read at the described words
    (`check_logits` at `match_layer`), true words against false ones."""
    import torch

    rows, true_words, false_words = [], [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            batch = encoder(chunk, model)
            logits, _, hidden = forward(model, batch, bf16=bf16, hidden=True)
            rows += score(chunk, batch, logits, encoder)
            if any(batch["checks"]) and match_layer < len(hidden):
                check, target, _ = check_logits(model, batch, hidden, match_layer)
                p_yes = torch.softmax(check, -1)[:, 0].tolist()
                for p, t in zip(p_yes, target.tolist(), strict=True):
                    (false_words if t else true_words).append(p)
    model.train()

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 4) if values else float("nan")

    rec = [r for r in rows if r["task"] == "recognition"]
    pos_rows, neg_rows = [r for r in rec if not r["negative"]], [r for r in rec if r["negative"]]
    pos, neg = mean([r["correct"] for r in pos_rows]), mean([r["correct"] for r in neg_rows])
    return {
        "speaker_token_acc": mean([r["token_acc"] for r in rows if r["task"] == "speaker"]),
        "question_token_acc": mean([r["token_acc"] for r in rows if r["task"] == "question"]),
        "recognition_pos": pos,
        "recognition_neg": neg,
        "recognition_weighted": round((pos + neg) / 2, 4),
        "recognition_auc": auc([r["p_first"] for r in pos_rows], [r["p_first"] for r in neg_rows]),
        "check_auc": auc(true_words, false_words),
        "identification": mean([r["correct"] for r in rows if r["task"] == "identification"]),
    }


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The share of (positive, negative) pairs the scores order right, ties counting half; NaN without both.

    >>> auc([0.9, 0.4], [0.4, 0.1])
    0.875
    """
    if not positives or not negatives:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return round(wins / (len(positives) * len(negatives)), 4)


def micro_batches(samples: Sequence, n: int) -> list[list]:
    """`samples` sorted by task (prompt lengths cluster by task) and cut into `n` near-equal chunks.

    >>> [len(c) for c in micro_batches(list(range(5)), 2)]
    [3, 2]
    """
    return cut(sorted(samples, key=lambda s: getattr(s, "task", "")), n)


def cut(items: Sequence, n: int) -> list[list]:
    """`items`, in their order, in `n` near-equal consecutive chunks (the last one shorter).

    >>> cut([1, 2, 3, 4, 5], 2)
    [[1, 2, 3], [4, 5]]
    """
    size = -(-len(items) // max(1, n))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _lr(config: DemoConfig, step: int) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    t = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def init_model(config: DemoConfig, run_dir: Path) -> Path:
    """`run_dir/init`: a fresh seeded model, or for a warm-started phase a copy of the model it starts from
    (whose tokenizer the phase must keep: a fresh one for another `seed` would split words differently)."""
    import shutil

    init = run_dir / "init"
    if not (init / "config.json").exists():
        if config.warm_start:
            shutil.rmtree(init, ignore_errors=True)
            shutil.copytree(config.warm_start, init)
        else:
            build_tiny(init, config.shape, corpus=demo_tasks.corpus_lines(seed=config.seed))
    return init


def _save(model: Any, opt: Any, step: int, rng: random.Random, run_dir: Path) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    tmp = run_dir / "checkpoint.tmp"
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Writing model shards" bar every checkpoint buried the build's log
    try:
        model.save_pretrained(tmp)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    torch.save(
        {"optimizer": opt.state_dict(), "step": step, "rng": rng.getstate(), "torch": torch.get_rng_state()},
        tmp / "state.pt",
    )
    final = run_dir / "checkpoint"
    if final.exists():
        import shutil

        shutil.rmtree(final)
    tmp.rename(final)


def same_config(stored: dict, current: dict) -> bool:
    """Equal, except for fields added since the run started that still hold their defaults, and for where it
    runs: the device, and the warm start's folder (a run moved from another machine, its phases with it).

    >>> same_config({"demo_config": {"steps": 5}}, {"demo_config": {"steps": 5, "warm_start": ""}})
    True
    >>> same_config({"demo_config": {"steps": 5}}, {"demo_config": {"steps": 6, "warm_start": ""}})
    False
    >>> same_config({"demo_config": {"device": "cuda", "warm_start": "gpu/a/hf"}},
    ...             {"demo_config": {"device": "cpu", "warm_start": "/here/a/hf"}})
    True
    >>> same_config({"demo_config": {"warm_start": ""}}, {"demo_config": {"warm_start": "/here/a/hf"}})
    False
    """
    defaults = json.loads(json.dumps(asdict(DemoConfig())))
    old = dict(stored["demo_config"])
    new = without_new_defaults(current["demo_config"], old, defaults)
    for key in ("device", "warm_start"):
        if key in old and key in new and (key == "device" or (old[key] and new[key])):
            old[key] = new[key]
    return old == new


def without_new_defaults(new: dict, old: dict, defaults: dict) -> dict:
    """`new` less the keys (at any depth) that `old` lacks and whose value is the default: what a config written
    before those fields existed would have said.

    >>> without_new_defaults({"a": 1, "v": {"b": 2, "w": 0}, "x": 3}, {"a": 1, "v": {"b": 2}}, {"v": {"w": 0}, "x": 0})
    {'a': 1, 'v': {'b': 2}, 'x': 3}
    """
    out = {}
    for key, value in new.items():
        if key not in old and key in defaults and value == defaults[key]:
            continue
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            value = without_new_defaults(value, old[key], defaults.get(key) or {})
        out[key] = value
    return out


def pretrain(config: DemoConfig, run_dir: Path, *, log: Any = print, stop_after: int | None = None) -> Path | None:
    """Train (or resume) the demo model in `run_dir`; returns `run_dir/hf`, the final model folder.

    `stop_after` ends the call after that many steps of this call (with a checkpoint), as an interruption
    would; it returns None then.
    """
    import shutil

    import torch
    from transformers import AutoModelForImageTextToText

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"demo_config": asdict(config)}
    cfg_path = run_dir / "config.json"
    if cfg_path.exists() and not same_config(json.loads(cfg_path.read_text()), json.loads(json.dumps(record))):
        raise ValueError(f"{run_dir} holds a run with another config; use a new directory")
    cfg_path.write_text(json.dumps(record, indent=1) + "\n")
    final = run_dir / "hf"
    if (final / "config.json").exists():  # this phase finished (e.g. on another machine): nothing left to do
        return final
    torch.set_num_threads(config.threads)
    bf16 = uses_bf16(config)
    if config.bf16 and not bf16:
        log(f"f32: no bf16 instructions on this {config.device}, where bf16 autocast runs far slower")
    init = init_model(config, run_dir)
    ckpt = run_dir / "checkpoint"
    start_from = ckpt if ckpt.exists() else Path(config.warm_start) if config.warm_start else init
    model = AutoModelForImageTextToText.from_pretrained(start_from, dtype=torch.float32).to(config.device)
    if config.fast_forwards:
        speed_up_vision(model)
    if config.compile:
        model.model.language_model.compile(dynamic=True)
    model.train()
    encoder = Encoder(init)
    if not ckpt.exists() and config.vision.steps and not config.warm_start:
        vision = run_dir / "vision.pt"
        if not vision.exists():
            log(f"stage A: vision tower, {config.vision.steps} steps")
            (run_dir / "vision_metrics.jsonl").unlink(missing_ok=True)
            state = train_vision(model, encoder.proc, config.vision, seed=config.seed, photo_size=config.photo_size,
                                 bf16=bf16, run_dir=run_dir, log=log, fast=config.fast_forwards)  # fmt: skip
            torch.save(state, run_dir / "vision.tmp")
            (run_dir / "vision.tmp").rename(vision)
        model.model.visual.load_state_dict(torch.load(vision))
    groups: dict[tuple[bool, bool], list] = {}
    for n, p in model.named_parameters():
        groups.setdefault((".visual." in f".{n}", p.ndim >= 2), []).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": ps, "weight_decay": config.weight_decay if matrix else 0.0,
             "lr_scale": config.vision_lr_scale if visual else 1.0}
            for (visual, matrix), ps in sorted(groups.items())
        ],
        lr=config.lr, betas=(0.9, 0.98),
    )  # fmt: skip
    rng = random.Random(config.seed)
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt / "state.pt", weights_only=False, map_location="cpu")  # also one saved on a GPU
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch"])
        log(f"resumed at step {step}")
    else:
        torch.manual_seed(config.seed)
    held_out = eval_set(config)
    metrics = run_dir / "metrics.jsonl"
    start, seen, first = time.monotonic(), 0, step
    fresh = Prefetcher(step_batches, config, first, workers=config.workers) if config.workers else None
    try:
        while step < config.steps:
            samples = next(fresh) if fresh is not None else draw_batch(rng, config, step)
            for group in opt.param_groups:
                group["lr"] = _lr(config, step) * group["lr_scale"]
            opt.zero_grad(set_to_none=True)
            loss = 0.0
            if config.length_batches:
                passes = encoder.batches(samples, model, config.micro_batches)
            else:
                passes = (encoder(chunk, model) for chunk in micro_batches(samples, config.micro_batches))
            for batch in passes:
                per_sample, _ = answer_loss(
                    model,
                    batch,
                    bf16=bf16,
                    decision_weight=config.decision_weight,
                    decision_apart=config.decision_apart,
                    match_weight=config.match_weight,
                    match_layer=config.match_layer,
                    match_false_weight=config.match_false_weight,
                )
                part = per_sample.sum() / len(samples)  # the batch mean, whatever the chunking
                part.backward()
                loss += float(part.detach())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            seen += len(samples)
            elapsed = time.monotonic() - start
            row: dict[str, Any] = {
                "step": step,
                "loss": round(loss, 4),
                "lr": _lr(config, step - 1),
                "samples_per_s": round(seen / elapsed, 2),
            }
            out_of_time = bool(config.time_limit_s) and elapsed > config.time_limit_s
            if step % config.eval_every == 0 or step == config.steps or out_of_time:
                row.update(evaluate(model, encoder, held_out, bf16=bf16, match_layer=config.match_layer))
                log(json.dumps(row))
            with metrics.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            interrupted = stop_after is not None and step - first >= stop_after
            if step % config.checkpoint_every == 0 or step == config.steps or out_of_time or interrupted:
                _save(model, opt, step, rng, run_dir)
            if interrupted:
                return None
            if out_of_time:
                log(f"time limit reached at step {step}")
                break
    finally:
        if fresh is not None:
            fresh.close()
    tmp = run_dir / "hf.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "preprocessor_config.json",
        "special_tokens_map.json",
        "vocab.json",
        "merges.txt",
        "added_tokens.json",
        "generation_config.json",
    ):
        if (init / name).exists() and not (tmp / name).exists():
            shutil.copy(init / name, tmp / name)
    tmp.rename(final)  # complete or absent: a finished phase is skipped (above)
    plot_curves(run_dir)
    return final


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def plot_curves(run_dir: Path) -> Path | None:
    """`curves.png`: stage A's attribute accuracies, stage B's loss and held-out metrics."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = read_metrics(run_dir)
    evals = [r for r in rows if "identification" in r]
    if not evals:
        return None
    vision_path = Path(run_dir) / "vision_metrics.jsonl"
    vision = [json.loads(x) for x in vision_path.read_text().splitlines() if x.strip()] if vision_path.exists() else []
    # A later phase (no stage A of its own) gets the two stage-B panels only.
    fig, axes = plt.subplots(1, 3 if vision else 2, figsize=(16 if vision else 11, 4))
    b, c = axes[-2:]
    if vision:
        a = axes[0]
        held = [r for r in vision if "held_acc_category" in r]
        window = 20  # training-batch accuracies are noisy: a running mean
        for key in ("category", "colour", "secondary", "pattern", "part", "mark", "scene"):
            if held:  # measured on photos never trained on
                a.plot([r["step"] for r in held], [r[f"held_acc_{key}"] for r in held], label=key, marker=".")
                continue
            ys = [r[f"acc_{key}"] for r in vision]
            smooth = [
                sum(ys[max(0, i - window + 1) : i + 1]) / len(ys[max(0, i - window + 1) : i + 1])
                for i in range(len(ys))
            ]
            a.plot([r["step"] for r in vision], smooth, label=key)
        a.set_title(f"stage A: vision tower ({'held-out photos' if held else 'training batches'})")
        a.set_xlabel("step")
        a.set_ylim(0, 1)
        a.legend(fontsize=7)
    b.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=0.6)
    b.set_title("stage B: answer-token loss")
    b.set_xlabel("step")
    b.set_yscale("log")
    for key in ("speaker_token_acc", "question_token_acc", "recognition_pos", "recognition_neg",
                "recognition_weighted", "recognition_auc", "check_auc", "identification"):  # fmt: skip
        if not any(key in r for r in evals):
            continue
        c.plot([r["step"] for r in evals], [r.get(key, float("nan")) for r in evals], label=key, marker=".")
    c.set_xlabel("step")
    c.set_ylim(0, 1)
    c.legend(fontsize=7)
    c.set_title("stage B: held-out concepts")
    fig.tight_layout()
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def with_overrides(config: DemoConfig, pairs: Sequence[str]) -> DemoConfig:
    """`key=value` overrides of the top-level numeric fields, of stage A's (`vision.steps=2500`) and of the
    model's shape (`shape.num_layers=4`: a new model, for a run from scratch).

    >>> with_overrides(DemoConfig(), ["steps=10", "vision.steps=20"]).vision.steps
    20
    >>> with_overrides(DemoConfig(), ["bf16=false"]).bf16
    False
    >>> with_overrides(DemoConfig(), ["shape.num_layers=4"]).shape.num_layers
    4
    """
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {"vision": {}, "shape": {}}
    for pair in pairs:
        key, _, value = pair.partition("=")
        part, _, inner = key.partition(".")
        if inner and part in nested:
            target, owner, key = nested[part], getattr(config, part), inner
        else:
            target, owner = changes, config
        kind = type(getattr(owner, key))
        target[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return replace(config, **changes, **{part: replace(getattr(config, part), **kw) for part, kw in nested.items()})
