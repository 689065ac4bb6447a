"""The RRG training run's configuration: one flat frozen dataclass, read from YAML plus `key=value` overrides.

`rrg-train train --config FILE.yaml [key=value ...]` calls `load_config`; `trainer.train.train` takes the
result. Everything here is pure except reading the YAML file: `coerce` turns a YAML value or an override
string into a field's declared type, and unknown keys raise one `ConfigError` that names them all.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# Fields that may change between a run and its resumption (they do not change what one step does).
RESUMABLE_FIELDS = frozenset({"out_dir", "steps", "save_every", "device", "gradient_checkpointing"})


class ConfigError(ValueError):
    """A config file or override that does not fit `TrainConfig`; the message says which key and why."""


@dataclass(frozen=True)
class TrainConfig:
    """One RRG self-play run. Defaults follow the RRG authors (K = 3, G = 4, LoRA rank 64) where they exist."""

    base: str = field(default="", metadata={"help": "the base model: a transformers Qwen2-VL folder"})
    data_root: str = field(default="", metadata={"help": "benchmark layout ROOT/<concept>/<image>"})
    categories: str = field(default="", metadata={"help": "concept -> category map (CSV or JSON)"})
    lookalikes: str = field(
        default="",
        metadata={"help": "JSON {concept: [concept, ...]}: the concepts each one's hard negatives come from first"},
    )
    db: str = field(
        default="", metadata={"help": "an rrg-local library.db to train on instead of data_root/categories"}
    )
    out_dir: str = field(default="", metadata={"help": "the run folder (run.json, adapter/, state.pt, metrics)"})
    name: str | None = field(default=None, metadata={"help": "model name for export; None: the run folder's name"})
    pre_tokenizer: str | None = field(
        default=None, metadata={"help": "GGUF pre-tokenizer fallback for locally trained tokenizers (e.g. qwen2)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for the split, the games, sampling and LoRA init"})
    test_fraction: float = field(default=0.2, metadata={"help": "share of concepts held out (never trained on)"})
    K: int = field(default=3, metadata={"help": "candidates per game (1 hard positive + K-1 hard negatives)"})
    group_size: int = field(default=4, metadata={"help": "descriptions sampled per target (G)"})
    targets_per_step: int = field(
        default=1, metadata={"help": "target photos (games) per optimizer step, split evenly across processes"}
    )
    steps: int = field(default=100, metadata={"help": "total optimizer steps (a resumed run continues to this)"})
    lr: float = field(default=1e-5, metadata={"help": "AdamW learning rate"})
    temperature: float = field(default=1.0, metadata={"help": "speaker sampling temperature"})
    max_new_tokens: int = field(default=96, metadata={"help": "description length cap in tokens"})
    clip_eps: float = field(default=0.2, metadata={"help": "PPO ratio clip"})
    kl_beta: float = field(default=0.0, metadata={"help": "weight of the KL to the adapter-off model; 0: none"})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha"})
    reward: str = field(default="contrastive", metadata={"help": "game reward: contrastive or binary"})
    listener: str = field(
        default="yes_no",
        metadata={
            "help": "yes_no: P(Yes) per photo; caption: the sampled description's likelihood per photo, softmaxed; "
            "caption_text: the same on the description as the runtime re-reads it; both: yes_no and caption_text, "
            "their game rewards averaged"
        },
    )
    game: str = field(
        default="photo",
        metadata={
            "help": "photo: each sampled description picks among the K candidate photos (the paper's game); "
            "description: tagging's way round, each candidate photo picks among the sampled description and the "
            "speaker's greedy descriptions of the negatives' concepts (listener yes_no: by P(Yes); caption_text: by "
            "the description's mean log-likelihood per token on the photo)"
        },
    )
    format_weight: float = field(default=1.0, metadata={"help": "weight of the <coarse>/<detailed> format reward"})
    length_weight: float = field(default=1.0, metadata={"help": "weight of the length penalty"})
    detailed_min_words: int = field(
        default=20,
        metadata={"help": "words the detailed description needs before the length penalty stops (paper: 20)"},
    )
    save_every: int = field(default=50, metadata={"help": "checkpoint every N steps (and always at the end)"})
    device: str = field(
        default="auto",
        metadata={"help": "auto (cuda if available, else cpu), cpu, cuda, cuda:N; multi-process: cpu or auto"},
    )
    dtype: str = field(default="auto", metadata={"help": "auto (bf16 on cuda, fp32 on cpu), float32, bfloat16, ..."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for activation memory"})
    load_in_4bit: bool = field(default=False, metadata={"help": "QLoRA base weights (CUDA + bitsandbytes only)"})

    def __post_init__(self) -> None:
        if self.reward not in ("contrastive", "binary"):
            raise ConfigError(f"reward must be 'contrastive' or 'binary', not {self.reward!r}")
        if self.listener not in ("yes_no", "caption", "caption_text", "both"):
            raise ConfigError(f"listener must be yes_no, caption, caption_text or both, not {self.listener!r}")
        if self.game not in ("photo", "description"):
            raise ConfigError(f"game must be photo or description, not {self.game!r}")
        if self.game == "description" and self.listener not in ("yes_no", "caption_text"):
            raise ConfigError(f"game = description needs listener = yes_no or caption_text, not {self.listener!r}")
        for key in ("K", "group_size", "targets_per_step", "steps", "save_every", "max_new_tokens", "lora_r",
                    "detailed_min_words"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, not {getattr(self, key)}")
        if self.K < 2:
            raise ConfigError("K must be >= 2: a game needs a target and at least one negative")
        if self.db and (self.data_root or self.categories):
            raise ConfigError("set either db or data_root/categories as the data source, not both")

    def check_data_source(self) -> None:
        """Training needs exactly one data source: `db`, or `data_root` with `categories`."""
        if not self.db and not self.data_root:
            raise ConfigError("no training data: set db (an rrg-local library.db) or data_root and categories")
        if self.data_root and not self.categories:
            raise ConfigError("data_root needs categories (a concept -> category CSV or JSON)")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(key: str, value: Any, kind: Any) -> Any:
    """`value` (from YAML or a `key=value` string) as the field type `kind`; raises `ConfigError`.

    >>> coerce("lr", "3e-4", float), coerce("name", "null", str | None), coerce("x", "yes", bool)
    (0.0003, None, True)
    """
    args = typing.get_args(kind)
    if type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~", "")):
            return None
        kind = next(a for a in args if a is not type(None))
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError("expected true or false")
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("expected a whole number")
            return int(value)
        if kind is float:
            return float(value)
        if value is None:
            raise ValueError("expected a value")
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: cannot read {value!r} as {kind.__name__} ({exc})") from exc


def from_mapping(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A `TrainConfig` from `{key: value}` (on top of `base`), every value coerced; unknown keys raise."""
    hints = typing.get_type_hints(TrainConfig)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    coerced = {k: coerce(k, v, hints[k]) for k, v in values.items()}
    return replace(base, **coerced) if base else TrainConfig(**coerced)


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """`["lr=1e-4", "name=x"]` -> `{"lr": "1e-4", "name": "x"}`; an item without `=` raises."""
    out = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        out[key.strip()] = value
    return out


def load_config(path: Path | str | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML mapping (or start from defaults when `path` is None), then apply `key=value` overrides."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
        values = dict(loaded or {})
    config = from_mapping(values)
    return from_mapping(parse_overrides(overrides), config) if overrides else config
