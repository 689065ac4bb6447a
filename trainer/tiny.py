"""Tiny random Qwen2-VL models for tests and demos: an HF folder plus its GGUF files, built locally, cached.

Callers: tests (runtime and trainer), `rrg-train tiny`, and anything that needs a real multimodal model without
a model hub. `build_tiny(out_dir, config)` writes a complete HF folder (config, safetensors in `config.dtype`, a
byte-level BPE tokenizer trained here with Qwen2's pre-tokenizer and special tokens, Qwen2-VL's chat template,
and a small-image preprocessor config). `tiny_gguf(config)` also converts it with llama.cpp's converter
(`trainer.gguf`) to f32/f16 text + mmproj GGUFs and quantized variants, every product cached by
`trainer.cache`. Weights are random (seeded): outputs are garbage unless a grammar constrains them.

`QWEN2VL_2B` is the same builder at Qwen2-VL-2B-Instruct's real shapes (2.2 B parameters, the real 151936-row
vocabulary padded past the small tokenizer, tied embeddings): its weights are random, but its cost per
photo and per token is the real model's. It is initialised and saved in bf16 (4.2 GiB of safetensors, about
5 GB of RAM at peak) and converted to f16 GGUFs only (2.9 GiB text, 1.3 GiB mmproj); the Q4_K_M text and Q8_0
projector come to 0.9 + 0.7 GiB. The whole build takes about 2 minutes on two cores.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
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
    vocab_size: int | None = None  # model vocabulary (embedding/LM-head rows); None: the tokenizer's size
    tie_word_embeddings: bool = False
    dtype: str = "float32"  # torch dtype of the weights (init and safetensors)
    gguf_types: tuple[str, ...] = ("f32", "f16")  # converter outputs; text quantizes from f32 if built, else f16

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


# Qwen2-VL-2B-Instruct's real shapes (its config.json and preprocessor_config.json): 2,208,985,600 parameters,
# 1.54 B of them in the text model (tied embeddings, 151936 rows) and 665 M in the vision tower (mlp_ratio 4:
# intermediate 5120). The tokenizer stays the small local BPE; the 151k-row embedding keeps decode cost real.
QWEN2VL_2B = TinyConfig(
    hidden_size=1536,
    intermediate_size=8960,
    num_layers=28,
    num_heads=12,
    num_kv_heads=2,
    vocab_size=151936,
    tie_word_embeddings=True,
    vision_embed_dim=1280,
    vision_depth=32,
    vision_heads=16,
    patch_size=14,
    spatial_merge_size=2,
    min_pixels=3136,
    max_pixels=12845056,
    rope_theta=1_000_000.0,
    dtype="bfloat16",  # as the real checkpoint ships; f32 would be 8.8 GB of RAM and disk for nothing
    gguf_types=("f16",),  # no f32 GGUF: text Q4_K_M and mmproj Q8_0 both quantize from f16
)


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
    """The transformers `Qwen2VLConfig` for `config` and a tokenizer of `vocab_size` tokens.

    `config.vocab_size`, when set, gives the model more rows than the tokenizer has tokens: llama.cpp's
    converter names the extra ids `[PAD<id>]` (type UNUSED), as real Qwen2 checkpoints have padding rows.
    """
    from transformers import Qwen2VLConfig

    if config.vocab_size is not None and config.vocab_size < vocab_size:
        raise ValueError(f"vocab_size {config.vocab_size} is smaller than the tokenizer ({vocab_size} tokens)")
    text = {
        "vocab_size": config.vocab_size or vocab_size,
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
        "tie_word_embeddings": config.tie_word_embeddings,
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
        tie_word_embeddings=config.tie_word_embeddings,
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


def build_tiny(out_dir: Path, config: TinyConfig = TinyConfig(), corpus: tuple[str, ...] = ()) -> Path:
    """Write a complete, seeded HF Qwen2-VL folder for `config` into `out_dir` and return it.

    `corpus`: extra lines for the tokenizer (a model trained on a known domain wants its words whole).
    """
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(config.bpe_vocab, corpus)
    token_ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    threads = torch.get_num_threads()
    # A tiny init gains nothing from threads (2 threads were slower on 2-core VMs); a real-size one does.
    torch.set_num_threads(1 if config.hidden_size <= 512 else threads)
    try:
        with torch.random.fork_rng(devices=[]):  # seed our init without moving the caller's RNG
            torch.manual_seed(config.seed)
            # Initialised directly in `config.dtype`: a 2B model never exists in float32 as well.
            model = Qwen2VLForConditionalGeneration._from_config(
                hf_config(config, len(tokenizer), token_ids), dtype=getattr(torch, config.dtype)
            )
    finally:
        torch.set_num_threads(threads)
    model.generation_config.bos_token_id = token_ids["<|endoftext|>"]
    model.generation_config.eos_token_id = [token_ids["<|im_end|>"], token_ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = token_ids["<|endoftext|>"]
    model.save_pretrained(out_dir)
    del model
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
    """The cache key parts of the base entry (HF folder + `config.gguf_types` GGUFs) for `config`."""
    return {"config": asdict(config), "builder": builder_version()}


def _gguf_name(kind: str, dtype: str) -> str:
    return f"{STEM}-{dtype}.gguf" if kind == "text" else f"mmproj-{STEM}-{dtype}.gguf"


def _build_entry(entry: Path, config: TinyConfig) -> None:
    hf_dir = build_tiny(entry / "hf", config)
    gc.collect()  # the converter subprocess should not share the machine with a dead 2B model
    jobs = [
        ConvertJob(hf_dir, entry / "gguf" / _gguf_name(kind, dtype), dtype, mmproj=kind == "mmproj", model_name=STEM)
        for kind in ("text", "mmproj")
        for dtype in config.gguf_types
    ]
    run_converter(jobs, fallback_pre="qwen2")


def tiny_gguf(
    config: TinyConfig = TinyConfig(),
    quant: tuple[str, ...] = ("Q8_0",),
    mmproj_quant: tuple[str, ...] = ("Q8_0",),
    *,
    root: Path | None = None,
) -> TinyModel:
    """Build (or reuse from the cache) the tiny model, its base GGUFs and quantized variants.

    The base GGUFs are `config.gguf_types` (f32 and f16 by default; f16 only for `QWEN2VL_2B`). `quant`
    lists llama.cpp types for the text model (quantized from the f32 GGUF, or from f16 where no f32 is
    built), `mmproj_quant` for the projector (quantized from f16: tensors Q8_0 cannot hold, like the 14-wide
    patch embedding, keep their source type, so an f32 source makes a Q8_0 projector larger than the f16
    one). Each variant is its own cache entry. Raises `trainer.gguf.ConverterMissing` when the converter has
    not been fetched (`rrg-train fetch-converter`).
    """
    if "f16" not in config.gguf_types:
        raise ValueError(f"gguf_types {config.gguf_types} must include f16 (the projector quantizes from it)")
    entry = cached_build(tiny_cache_parts(config), lambda tmp: _build_entry(tmp, config), name=CACHE_NAME, root=root)
    text_source = "f32" if "f32" in config.gguf_types else "f16"
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    files: dict[str, dict[str, Path]] = {}
    for kind, qtypes, source in (("text", quant, text_source), ("mmproj", mmproj_quant, "f16")):
        files[kind] = {dtype: entry / "gguf" / _gguf_name(kind, dtype) for dtype in config.gguf_types}
        for qtype in qtypes:
            name = _gguf_name(kind, qtype)
            q_entry = cached_build(
                {"base": entry.name, "kind": kind, "qtype": qtype},
                lambda tmp, src=files[kind][source], name=name, q=qtype: quantize(
                    src, tmp / name, q, n_threads=threads
                ),
                name=f"{CACHE_NAME}-{kind}-{qtype.lower()}",
                root=root,
            )
            files[kind][qtype] = q_entry / name
    return TinyModel(hf_dir=entry / "hf", text=files["text"], mmproj=files["mmproj"], config=config)
