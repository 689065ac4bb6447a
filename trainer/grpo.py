"""GRPO on a Qwen2-VL speaker with a LoRA adapter: prompts, sampling, log-probs, the listener and one update.

The RRG loop (a later `trainer` script) calls these pieces: `add_lora` wraps a transformers Qwen2-VL in a
peft adapter on the language model only; `encode_prompt` turns (image, chat) into model inputs; `sample`
draws a group of G completions with their generation-time log-probs; `listener_p_yes` reads
P(Yes | image, description) from the frozen base (adapter off); `grpo_step` does one clipped-surrogate
update, optionally with a KL term to the adapter-off model. `group_advantages` and `clipped_surrogate` are
pure tensor maths and come first; everything below `encode_prompt` runs the model.

The policy's distribution is softmax(logits / temperature) with the vision special tokens suppressed:
`sample` draws from it and `sequence_logprobs` recomputes it, so the two agree (to float32 round-off).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

LORA_TARGETS = r"^model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)$"


@dataclass(frozen=True)
class GRPOConfig:
    """One flat config for the update; defaults follow the RRG authors (G = 4, LoRA rank 64 on the text model)."""

    group_size: int = field(default=4, metadata={"help": "completions sampled per prompt (G)"})
    max_new_tokens: int = field(default=96, metadata={"help": "completion length cap"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (also used for log-probs)"})
    lr: float = field(default=1e-5, metadata={"help": "AdamW learning rate"})
    clip_eps: float = field(default=0.2, metadata={"help": "PPO ratio clip"})
    kl_beta: float = field(default=0.0, metadata={"help": "weight of the k3 KL to the adapter-off model; 0: none"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (0 keeps log-probs reproducible)"})


def lora_targets() -> str:
    """The peft `target_modules` regex: the language model's linear layers, never the vision tower or merger.

    >>> import re
    >>> bool(re.fullmatch(lora_targets(), "model.language_model.layers.3.mlp.gate_proj"))
    True
    >>> bool(re.fullmatch(lora_targets(), "model.visual.blocks.0.mlp.fc1"))
    False
    """
    return LORA_TARGETS


def group_advantages(rewards: Sequence[float], group_size: int, eps: float = 1e-4) -> list[float]:
    """(r - mean) / (std + eps) within each consecutive group of `group_size` rewards (population std).

    >>> [round(a, 3) for a in group_advantages([1.0, 0.0, 0.5, 0.5], 2)]
    [1.0, -1.0, 0.0, 0.0]
    """
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}")
    out: list[float] = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        mean = sum(group) / len(group)
        std = (sum((r - mean) ** 2 for r in group) / len(group)) ** 0.5
        out.extend((r - mean) / (std + eps) for r in group)
    return out


def clipped_surrogate(
    logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float
) -> torch.Tensor:
    """PPO's clipped objective as a loss: -mean over masked tokens of min(ratio * A, clip(ratio) * A).

    `logp_*` and `mask` are (B, T) per completion token; `advantages` is (B,), one per completion.
    """
    import torch

    ratio = torch.exp(logp_new - logp_old)
    adv = advantages[:, None]
    objective = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    return -(objective * mask).sum() / mask.sum().clamp(min=1)


def add_lora(model: Any, config: GRPOConfig = GRPOConfig()) -> Any:
    """Wrap `model` in a fresh peft LoRA adapter on `lora_targets()`; the base weights stay frozen."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules=lora_targets()
    )
    return get_peft_model(model, lora)


def suppressed_ids(model: Any) -> list[int]:
    """Token ids a description must never contain: image/video pads and vision start/end."""
    cfg = model.config
    return [cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id]


@dataclass(frozen=True)
class Prompt:
    """Model inputs for one (image, chat) prompt, batch of one: input_ids (1, L), pixel_values, image_grid_thw."""

    input_ids: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor


def chat(text: str, system: str | None = None) -> list[dict]:
    """An HF chat: an optional system turn, then one user turn with the image first and `text` after it."""
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}
    return ([{"role": "system", "content": system}] if system else []) + [user]


def speaker_chat(category: str) -> list[dict]:
    """The runtime's speaker prompt (`rrg_local.vlm.prompts.speaker`) as an HF chat."""
    from rrg_local.vlm.prompts import SPEAKER_SYSTEM, speaker
    from rrg_local.vlm.protocol import ImageRef

    user = speaker(ImageRef(b""), category)[-1]
    return chat("".join(p for p in user.parts if isinstance(p, str)), SPEAKER_SYSTEM)


LISTENER_NAME = "Bo"
ANSWER_PREFIX = '{"Answer": "'


def listener_chat(description: str, category: str = "object") -> list[dict]:
    """The runtime's recognition prompt (`rrg_local.vlm.prompts.recognition`) for a speaker's description.

    `description` may be the speaker's raw answer: its `<coarse>`/`<detailed>` parts are read when present.
    The concept is called `LISTENER_NAME` (a name says nothing about the photo).
    """
    from rrg_local.vlm.prompts import ConceptText, parse_description, recognition
    from rrg_local.vlm.protocol import ImageRef

    coarse, detailed = parse_description(description)
    if not (coarse or detailed):
        detailed = " ".join(description.split())
    return hf_chat(recognition(ImageRef(b""), ConceptText(LISTENER_NAME, category, coarse, detailed)))


def hf_chat(messages: Sequence[Any]) -> list[dict]:
    """Runtime `Message`s as an HF chat: images become `{"type": "image"}` parts, in place."""
    out = []
    for m in messages:
        if all(isinstance(p, str) for p in m.parts):
            out.append({"role": m.role, "content": "".join(m.parts)})
        else:
            parts = [{"type": "text", "text": p} if isinstance(p, str) else {"type": "image"} for p in m.parts]
            out.append({"role": m.role, "content": parts})
    return out


def encode_prompt(model: Any, tokenizer: Any, image_processor: Any, image: Any, messages: list[dict]) -> Prompt:
    """Apply the chat template (generation prompt added) and expand the image pad to its token count."""
    pixels = image_processor(images=[image], return_tensors="pt")
    n_image = int(pixels["image_grid_thw"].prod()) // model.config.vision_config.spatial_merge_size**2
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text = text.replace("<|image_pad|>", "<|image_pad|>" * n_image)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    return Prompt(ids, pixels["pixel_values"], pixels["image_grid_thw"])


def _model_inputs(model: Any, prompt: Prompt, completions: torch.Tensor | None, batch: int) -> dict:
    import torch

    device = model.device
    ids = prompt.input_ids.to(device).expand(batch, -1)
    if completions is not None:
        ids = torch.cat([ids, completions.to(device)], dim=1)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": prompt.pixel_values.to(device, model.dtype).repeat(batch, 1),
        "image_grid_thw": prompt.image_grid_thw.to(device).repeat(batch, 1),
    }
    if _takes_mm_token_types(model):  # transformers >= 5.2x needs it for M-RoPE positions; older 5.x rejects it
        inputs["mm_token_type_ids"] = (ids == model.config.image_token_id).long()
    return inputs


def _takes_mm_token_types(model: Any) -> bool:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "mm_token_type_ids" in inspect.signature(base.forward).parameters


@dataclass(frozen=True)
class Rollout:
    """G completions of one prompt: ids (G, T), mask (G, T: 1 up to and including EOS) and their log-probs."""

    prompt: Prompt
    completions: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor


def _policy_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, suppress: list[int]):
    import torch

    logits = logits.float() / temperature
    logits[..., suppress] = float("-inf")
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)


def sample(model: Any, prompt: Prompt, config: GRPOConfig, eos_ids: Sequence[int] | None = None) -> Rollout:
    """Draw `config.group_size` completions (pure sampling: no top-k/top-p) and their log-probs as sampled."""
    import torch

    group = config.group_size
    inputs = _model_inputs(model, prompt, None, group)
    eos = list(eos_ids if eos_ids is not None else _eos_ids(model))
    suppress = suppressed_ids(model)
    with torch.no_grad():
        out = model.generate(
            **inputs,
            do_sample=True,
            temperature=config.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=config.max_new_tokens,
            suppress_tokens=suppress,
            eos_token_id=eos,
            pad_token_id=eos[-1],
            output_logits=True,
            return_dict_in_generate=True,
        )
    completions = out.sequences[:, prompt.input_ids.shape[1] :]
    logits = torch.stack(out.logits, dim=1)
    logprobs = _policy_logprobs(logits, completions, config.temperature, suppress)
    return Rollout(prompt, completions, completion_mask(completions, eos), logprobs)


def greedy(model: Any, tokenizer: Any, prompt: Prompt, max_new_tokens: int) -> str:
    """The greedy continuation of `prompt` (vision tokens suppressed), decoded; adapters as the caller set them."""
    import torch

    eos = _eos_ids(model)
    with torch.no_grad():
        out = model.generate(
            **_model_inputs(model, prompt, None, 1),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            suppress_tokens=suppressed_ids(model),
            eos_token_id=eos,
            pad_token_id=eos[-1],
        )
    return tokenizer.decode(out[0, prompt.input_ids.shape[1] :], skip_special_tokens=True)


def _eos_ids(model: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    return list(eos) if isinstance(eos, list | tuple) else [eos]


def completion_mask(completions: torch.Tensor, eos_ids: Sequence[int]) -> torch.Tensor:
    """1.0 for tokens up to and including the first EOS, 0.0 after it (generate pads finished rows)."""
    import torch

    is_eos = torch.isin(completions, torch.tensor(list(eos_ids), device=completions.device))
    ended_before = (torch.cumsum(is_eos.long(), dim=1) - is_eos.long()) > 0
    return (~ended_before).float()


def sequence_logprobs(model: Any, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """(G, T) log-probs of the rollout's completion tokens under `model` now, with gradients if enabled."""
    group, length = rollout.completions.shape
    inputs = _model_inputs(model, rollout.prompt, rollout.completions, group)
    logits = model(**inputs, logits_to_keep=length + 1).logits[:, :-1]
    return _policy_logprobs(logits, rollout.completions, temperature, suppressed_ids(model))


def adapter_off(model: Any):
    """`model.disable_adapter()` for a peft model; a no-op context for a plain one."""
    return model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()


def listener_prompt(
    model: Any, tokenizer: Any, image_processor: Any, image: Any, description: str, category: str = "object"
) -> Prompt:
    """The recognition prompt with the runtime's forced answer prefix, ready for the Yes/No token."""
    import torch

    prompt = encode_prompt(model, tokenizer, image_processor, image, listener_chat(description, category))
    forced = tokenizer(ANSWER_PREFIX, add_special_tokens=False, return_tensors="pt").input_ids
    return Prompt(torch.cat([prompt.input_ids, forced], dim=1), prompt.pixel_values, prompt.image_grid_thw)


def listener_p_yes(
    model: Any, tokenizer: Any, image_processor: Any, image: Any, description: str, category: str = "object"
) -> float:
    """P(Yes | image, description) from the base model (adapter off), read as the runtime reads it: the
    recognition prompt, `{"Answer": "` forced, Yes vs No at the next token (renormalised over the two)."""
    import torch

    from rrg_local.vlm.answers import option_probs

    prompt = listener_prompt(model, tokenizer, image_processor, image, description, category)
    options = [tokenizer(o, add_special_tokens=False).input_ids[0] for o in ("Yes", "No")]
    with torch.no_grad(), adapter_off(model):
        logits = model(**_model_inputs(model, prompt, None, 1)).logits[0, -1]
    return float(option_probs(logits.float().cpu().numpy(), options)[0][0])


def listener_caption_logprobs(
    model: Any,
    tokenizer: Any,
    image_processor: Any,
    image: Any,
    rollout: Rollout,
    category: str = "object",
    prefix: str = "",
    per_token: bool = False,
) -> list[float]:
    """Per completion of `rollout`: log P(completion | image) under the base model (adapter off), the completion
    read as the speaker's answer on `image` (the speaker prompt, summed over its tokens up to EOS): the caption-
    likelihood listener. A softmax of these over a game's photos is P(photo | description) for a listener that
    judges by its captions (the literal listener of rational speech acts), with no yes/no role to learn.
    `prefix`: text forced after the prompt, before the completions (see `caption_rollout`). `per_token`: the mean
    over the completion's tokens instead of the sum, to compare descriptions of different lengths on one photo."""
    import torch

    prompt = encode_prompt(model, tokenizer, image_processor, image, speaker_chat(category))
    if prefix:
        forced = tokenizer(prefix, add_special_tokens=False, return_tensors="pt").input_ids
        prompt = Prompt(torch.cat([prompt.input_ids, forced], dim=1), prompt.pixel_values, prompt.image_grid_thw)
    with torch.no_grad(), adapter_off(model):
        logprobs = sequence_logprobs(model, Rollout(prompt, rollout.completions, rollout.mask, rollout.logprobs))
    summed = (logprobs.float() * rollout.mask).sum(dim=1)
    return (summed / rollout.mask.sum(dim=1).clamp(min=1) if per_token else summed).tolist()


def text_rollout(tokenizer: Any, texts: Sequence[str]) -> Rollout:
    """`texts` (e.g. greedy descriptions) as a rollout for `listener_caption_logprobs`, which builds the prompt
    itself (none here): each written as `caption_rollout` writes a sampled one (one that does not parse: its own
    tokens, then EOS)."""
    import torch

    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    completions, mask = _padded([tokenizer(text, add_special_tokens=False).input_ids + [eos] for text in texts])
    return caption_rollout(tokenizer, Rollout(None, completions, mask, torch.zeros(mask.shape)), texts)


def _padded(rows: Sequence[Sequence[int]], dtype: Any = None, mask_dtype: Any = None) -> tuple[Any, Any]:
    """Token rows as a zero-padded (len(rows), longest) id tensor and its 1/0 mask."""
    import torch

    completions = torch.zeros((len(rows), max(len(r) for r in rows)), dtype=dtype or torch.long)
    mask = torch.zeros(completions.shape, dtype=mask_dtype or torch.float32)
    for i, r in enumerate(rows):
        completions[i, : len(r)] = torch.tensor(r, dtype=completions.dtype)
        mask[i, : len(r)] = 1
    return completions, mask


def caption_rollout(tokenizer: Any, rollout: Rollout, texts: Sequence[str]) -> Rollout:
    """The completions as the runtime's caption listener reads them (`rrg_local.vlm.tasks.caption_likelihood`):
    each text parsed into its coarse and detailed descriptions, written in the answer format again and tokenized
    afresh, to be scored after a forced `prompts.CAPTION_OPEN`; a text without both descriptions is scored as sampled
    (its tokens, EOS included). A speaker cannot then please the listener with token ids the runtime never reads.
    """
    import torch

    from rrg_local.vlm.prompts import CAPTION_OPEN, parse_description, speaker_answer

    rows = []
    for ids, mask, text in zip(rollout.completions, rollout.mask, texts, strict=True):
        coarse, detailed = parse_description(text)
        if coarse and detailed:
            answer = speaker_answer(coarse, detailed).removeprefix(CAPTION_OPEN)
            rows.append(tokenizer(answer, add_special_tokens=False).input_ids)
        else:
            rows.append(ids[mask.bool()].tolist())
    completions, mask = _padded(rows, rollout.completions.dtype, rollout.mask.dtype)
    return Rollout(rollout.prompt, completions, mask, torch.zeros(mask.shape))


def grpo_step(
    model: Any, optimizer: Any, rollouts: Sequence[Rollout], rewards: Sequence[Sequence[float]], config: GRPOConfig
) -> dict[str, float]:
    """One optimizer step over `rollouts` (one micro-batch each: gradient accumulation); returns loss stats.

    `rewards[i]` holds the G rewards of `rollouts[i]`; advantages are normalised within each group, so a group
    whose completions all score the same contributes nothing but its KL term.
    """
    import torch

    optimizer.zero_grad(set_to_none=True)
    total = {"loss": 0.0, "kl": 0.0}
    for rollout, group_rewards in zip(rollouts, rewards, strict=True):
        adv = torch.tensor(group_advantages(list(group_rewards), len(group_rewards)), device=model.device)
        logp = sequence_logprobs(model, rollout, config.temperature)
        loss = clipped_surrogate(logp, rollout.logprobs, adv, rollout.mask, config.clip_eps)
        if config.kl_beta:
            with torch.no_grad(), adapter_off(model):
                ref = sequence_logprobs(model, rollout, config.temperature)
            delta = ref - logp
            kl = ((torch.exp(delta) - delta - 1) * rollout.mask).sum() / rollout.mask.sum().clamp(min=1)
            loss = loss + config.kl_beta * kl
            total["kl"] += float(kl.detach()) / len(rollouts)
        (loss / len(rollouts)).backward()
        total["loss"] += float(loss.detach()) / len(rollouts)
    params = [p for p in model.parameters() if p.requires_grad]
    total["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
    optimizer.step()
    return total
