"""Tiny random Qwen2-VL models for tests and demos: an HF folder plus its GGUF files, built locally, cached.

Callers: tests (runtime and trainer), `rrg-train tiny`, and anything that needs a real multimodal model without
a model hub. `build_tiny(out_dir, config)` writes a complete HF folder (config, float32 safetensors, a
byte-level BPE tokenizer trained here with Qwen2's pre-tokenizer and special tokens, Qwen2-VL's chat template,
and a small-image preprocessor config). `tiny_gguf(config)` also converts it with llama.cpp's converter
(`trainer.gguf`) to f32/f16 text + mmproj GGUFs and quantized variants, every product cached by
`trainer.cache`. Weights are random (seeded): outputs are garbage unless a grammar constrains them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.cache import cached_build
from trainer.gguf import ConvertJob, GGUFPair, quantize, run_converter
from trainer.tiny_tokenizer import QWEN2_VL_CHAT_TEMPLATE, SPECIAL_TOKENS, train_tokenizer

if TYPE_CHECKING:
    from transformers import Qwen2VLConfig

# Modules whose source shapes the cached files: any edit to them is a new builder version (no manual bumps).
BUILDER_SOURCES = ("tiny.py", "tiny_tokenizer.py", "gguf.py")
CACHE_NAME = "tiny-qwen2vl"
STEM = "tiny-qwen2vl"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class TinyConfig:
    """Shape of a tiny Qwen2-VL. Defaults: about 0.26 M parameters; images become 8-16 tokens (112 px -> 16).

    llama.cpp ignores pixel limits in the GGUF for Qwen2-VL (it always allows 8-4096 tokens), so `min_pixels`
    is its 8-token floor and a runtime that wants transformers' resizing must pass `image_max_tokens`.
    """

    seed: int = 0
    bpe_vocab: int = 640  # byte-level BPE size before the 14 special tokens (256 byte symbols + merges)
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_embed_dim: int = 32
    vision_depth: int = 3  # llama.cpp's Qwen2-VL projector conversion needs >= 3
    vision_heads: int = 2
    patch_size: int = 14
    spatial_merge_size: int = 2
    min_pixels: int = 8 * 28 * 28
    max_pixels: int = 112 * 112
    init_std: float = 0.02
    rope_theta: float = 1_000_000.0

    @property
    def image_max_tokens(self) -> int:
        """Image tokens at `max_pixels` (what to pass to mtmd's `image_max_tokens`).

        >>> TinyConfig().image_max_tokens
        16
        """
        return self.max_pixels // (self.patch_size * self.spatial_merge_size) ** 2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mrope_section(self) -> list[int]:
        """Qwen2-VL's (temporal, height, width) split of the rotary half-dim, scaled: 64 -> [16, 24, 24].

        >>> TinyConfig().mrope_section
        [2, 3, 3]
        """
        half = self.head_dim // 2
        hw = 3 * half // 8
        return [half - 2 * hw, hw, hw]


@dataclass(frozen=True)
class TinyModel:
    """Paths of one cached tiny model: the HF folder and its GGUFs, keyed by type ("f32", "f16", "Q8_0", ...)."""

    hf_dir: Path
    text: Mapping[str, Path]
    mmproj: Mapping[str, Path]
    config: TinyConfig = TinyConfig()

    def pair(self, text: str = "f16", mmproj: str | None = None) -> GGUFPair:
        """The text + projector files to load together; `mmproj` defaults to `text`'s type if built, else f16.

        `tiny.pair("f16")` and `tiny.pair("f32")` are the parity pairs; `tiny.pair("Q4_K_M", "Q8_0")` is the
        production-style mix.
        """
        mm = mmproj or (text if text in self.mmproj else "f16")
        for kind, have, want in (("text", self.text, text), ("mmproj", self.mmproj, mm)):
            if want not in have:
                raise KeyError(f"no {want} {kind} GGUF built; have {', '.join(have)} (see tiny_gguf(quant=...))")
        return GGUFPair(self.text[text], self.mmproj[mm])


def hf_config(config: TinyConfig, vocab_size: int, token_ids: Mapping[str, int]) -> Qwen2VLConfig:
    """The transformers `Qwen2VLConfig` for `config` and a tokenizer of `vocab_size` tokens."""
    from transformers import Qwen2VLConfig

    text = {
        "vocab_size": vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "initializer_range": config.init_std,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": config.rope_theta,
            "mrope_section": config.mrope_section,
        },
        "bos_token_id": token_ids["<|endoftext|>"],
        "eos_token_id": token_ids["<|im_end|>"],
        "pad_token_id": token_ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    vision = {
        "depth": config.vision_depth,
        "embed_dim": config.vision_embed_dim,
        "hidden_size": config.hidden_size,  # the merger projects into the text model's width
        "num_heads": config.vision_heads,
        "mlp_ratio": 4,
        "patch_size": config.patch_size,
        "spatial_merge_size": config.spatial_merge_size,
        "temporal_patch_size": 2,
        "initializer_range": config.init_std,
    }
    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=False,
        initializer_range=config.init_std,
    )


def preprocessor_config(config: TinyConfig) -> dict:
    """`preprocessor_config.json` for the image processor (and the converter, which reads mean/std)."""
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "min_pixels": config.min_pixels,
        "max_pixels": config.max_pixels,
        "size": {"shortest_edge": config.min_pixels, "longest_edge": config.max_pixels},
        "patch_size": config.patch_size,
        "temporal_patch_size": 2,
        "merge_size": config.spatial_merge_size,
    }


def build_tiny(out_dir: Path, config: TinyConfig = TinyConfig()) -> Path:
    """Write a complete, seeded HF Qwen2-VL folder for `config` into `out_dir` and return it."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(config.bpe_vocab)
    token_ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny init gains nothing from threads, and 2 threads were slower on 2-core VMs
    try:
        with torch.random.fork_rng(devices=[]):  # seed our init without moving the caller's RNG
            torch.manual_seed(config.seed)
            model = Qwen2VLForConditionalGeneration(hf_config(config, len(tokenizer), token_ids))
    finally:
        torch.set_num_threads(threads)
    model = model.to(torch.float32)
    model.generation_config.bos_token_id = token_ids["<|endoftext|>"]
    model.generation_config.eos_token_id = [token_ids["<|im_end|>"], token_ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = token_ids["<|endoftext|>"]
    model.save_pretrained(out_dir)
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)
    (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(config), indent=2) + "\n")
    return out_dir


def builder_version() -> str:
    """A digest of the builder's own source, part of every cache key."""
    digest = hashlib.sha256()
    for name in BUILDER_SOURCES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:12]


def tiny_cache_parts(config: TinyConfig) -> dict:
    """The cache key parts of the base entry (HF folder + f32/f16 GGUFs) for `config`."""
    return {"config": asdict(config), "builder": builder_version()}


def _gguf_name(kind: str, dtype: str) -> str:
    return f"{STEM}-{dtype}.gguf" if kind == "text" else f"mmproj-{STEM}-{dtype}.gguf"


def _build_entry(entry: Path, config: TinyConfig) -> None:
    hf_dir = build_tiny(entry / "hf", config)
    jobs = [
        ConvertJob(hf_dir, entry / "gguf" / _gguf_name(kind, dtype), dtype, mmproj=kind == "mmproj", model_name=STEM)
        for kind in ("text", "mmproj")
        for dtype in ("f32", "f16")
    ]
    run_converter(jobs, fallback_pre="qwen2")


def tiny_gguf(
    config: TinyConfig = TinyConfig(),
    quant: tuple[str, ...] = ("Q8_0",),
    mmproj_quant: tuple[str, ...] = ("Q8_0",),
    *,
    root: Path | None = None,
) -> TinyModel:
    """Build (or reuse from the cache) the tiny model, its f32/f16 GGUFs and quantized variants.

    `quant` lists llama.cpp types for the text model (quantized from the f32 GGUF), `mmproj_quant` for the
    projector (quantized from f16: tensors Q8_0 cannot hold, like the 14-wide patch embedding, keep their
    source type, so an f32 source makes a Q8_0 projector larger than the f16 one). Each variant is its own
    cache entry. Raises `trainer.gguf.ConverterMissing` when the converter has not been fetched
    (`rrg-train fetch-converter`).
    """
    entry = cached_build(tiny_cache_parts(config), lambda tmp: _build_entry(tmp, config), name=CACHE_NAME, root=root)
    files: dict[str, dict[str, Path]] = {}
    for kind, qtypes, source in (("text", quant, "f32"), ("mmproj", mmproj_quant, "f16")):
        files[kind] = {dtype: entry / "gguf" / _gguf_name(kind, dtype) for dtype in ("f32", "f16")}
        for qtype in qtypes:
            name = _gguf_name(kind, qtype)
            q_entry = cached_build(
                {"base": entry.name, "kind": kind, "qtype": qtype},
                lambda tmp, src=files[kind][source], name=name, q=qtype: quantize(src, tmp / name, q),
                name=f"{CACHE_NAME}-{kind}-{qtype.lower()}",
                root=root,
            )
            files[kind][qtype] = q_entry / name
    return TinyModel(hf_dir=entry / "hf", text=files["text"], mmproj=files["mmproj"], config=config)
