"""Reading a Qwen2-VL model back out of its GGUF pair: `hf_from_gguf`.

The shipped demo model is its GGUF files only; the HF folders of its build stay on the build machine. To run a
later stage on it again (the RRG stage, a probe that needs the HF model) without re-training stages A, B1 and
B2, `hf_from_gguf` writes an HF folder with the same weights: each tensor of the text GGUF and of the mmproj
mapped back to its transformers name (the vision tower's q/k/v joined into `qkv` again, the patch embedding's
two temporal halves stacked), the f16 matrices widened to f32 (exact), into a copy of a template folder that
supplies the config and the tokenizer (for the demo model, the build's seeded `init`). Converting the result
with llama.cpp's converter gives back the same tensors (`tests/trainer/test_gguf_import.py`).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

# GGUF name -> transformers name; `{i}` is the block index.
TEXT_NAMES = {
    "token_embd.weight": "model.language_model.embed_tokens.weight",
    "output_norm.weight": "model.language_model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.language_model.layers.{i}.input_layernorm.weight",
    "blk.{i}.ffn_norm.weight": "model.language_model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.attn_q.weight": "model.language_model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_q.bias": "model.language_model.layers.{i}.self_attn.q_proj.bias",
    "blk.{i}.attn_k.weight": "model.language_model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_k.bias": "model.language_model.layers.{i}.self_attn.k_proj.bias",
    "blk.{i}.attn_v.weight": "model.language_model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_v.bias": "model.language_model.layers.{i}.self_attn.v_proj.bias",
    "blk.{i}.attn_output.weight": "model.language_model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_gate.weight": "model.language_model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.language_model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.language_model.layers.{i}.mlp.down_proj.weight",
}
VISION_NAMES = {
    "v.post_ln.weight": "model.visual.merger.ln_q.weight",
    "v.post_ln.bias": "model.visual.merger.ln_q.bias",
    "mm.0.weight": "model.visual.merger.mlp.0.weight",
    "mm.0.bias": "model.visual.merger.mlp.0.bias",
    "mm.2.weight": "model.visual.merger.mlp.2.weight",
    "mm.2.bias": "model.visual.merger.mlp.2.bias",
    "v.blk.{i}.ln1.weight": "model.visual.blocks.{i}.norm1.weight",
    "v.blk.{i}.ln1.bias": "model.visual.blocks.{i}.norm1.bias",
    "v.blk.{i}.ln2.weight": "model.visual.blocks.{i}.norm2.weight",
    "v.blk.{i}.ln2.bias": "model.visual.blocks.{i}.norm2.bias",
    "v.blk.{i}.attn_out.weight": "model.visual.blocks.{i}.attn.proj.weight",
    "v.blk.{i}.attn_out.bias": "model.visual.blocks.{i}.attn.proj.bias",
    "v.blk.{i}.ffn_up.weight": "model.visual.blocks.{i}.mlp.fc1.weight",
    "v.blk.{i}.ffn_up.bias": "model.visual.blocks.{i}.mlp.fc1.bias",
    "v.blk.{i}.ffn_down.weight": "model.visual.blocks.{i}.mlp.fc2.weight",
    "v.blk.{i}.ffn_down.bias": "model.visual.blocks.{i}.mlp.fc2.bias",
}
# Joined back in this order: the converter splits `attn.qkv` into q, k, v and the patch embedding's
# (out, in, 2, 14, 14) kernel into its two temporal slices.
QKV = ("v.blk.{i}.attn_q", "v.blk.{i}.attn_k", "v.blk.{i}.attn_v")
PATCH = ("v.patch_embd.weight", "v.patch_embd.weight.1")


class GGUFImportError(ValueError):
    """The GGUF pair does not fit the template (a missing, extra or misshapen tensor); one line."""


def _reader(path: Path, root: Path | None) -> Any:
    from trainer.gguf import converter_dir

    gguf_py = str(converter_dir(root) / "gguf-py")
    if gguf_py not in sys.path:
        sys.path.insert(0, gguf_py)
    import gguf

    return gguf.GGUFReader(str(path))


def _arrays(path: Path, root: Path | None) -> dict[str, Any]:
    import numpy as np

    return {t.name: np.array(t.data) for t in _reader(path, root).tensors}


def _rename(name: str, table: dict[str, str]) -> str | None:
    for pattern, target in table.items():
        rx = "^" + re.escape(pattern).replace(re.escape("{i}"), r"(\d+)") + "$"
        m = re.match(rx, name)
        if m:
            return target.replace("{i}", m.group(1)) if m.groups() else target
    return None


def state_dict_from_gguf(text: Path, mmproj: Path, *, root: Path | None = None) -> dict[str, Any]:
    """The transformers state dict (f32 torch tensors) held by a Qwen2-VL text GGUF and its mmproj."""
    import numpy as np
    import torch

    out: dict[str, Any] = {}
    arrays = _arrays(Path(text), root)
    for name, arr in arrays.items():
        target = _rename(name, TEXT_NAMES)
        if target is None:
            raise GGUFImportError(f"{text}: unexpected tensor {name}")
        out[target] = arr
    vision = _arrays(Path(mmproj), root)
    blocks = sorted({int(m.group(1)) for n in vision if (m := re.match(r"^v\.blk\.(\d+)\.", n))})
    for i in blocks:
        for part in ("weight", "bias"):
            names = [f"{q.format(i=i)}.{part}" for q in QKV]
            if not all(n in vision for n in names):
                raise GGUFImportError(f"{mmproj}: block {i} lacks one of {names}")
            out[f"model.visual.blocks.{i}.attn.qkv.{part}"] = np.concatenate([vision.pop(n) for n in names])
    if not all(n in vision for n in PATCH):
        raise GGUFImportError(f"{mmproj}: the patch embedding needs both of {PATCH}")
    out["model.visual.patch_embed.proj.weight"] = np.stack([vision.pop(n) for n in PATCH], axis=2)
    for name, arr in vision.items():
        target = _rename(name, VISION_NAMES)
        if target is None:
            raise GGUFImportError(f"{mmproj}: unexpected tensor {name}")
        out[target] = arr
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}


def hf_from_gguf(text: Path, mmproj: Path, template: Path, out: Path, *, root: Path | None = None) -> Path:
    """Write `out`: `template`'s config and tokenizer with the weights of the GGUF pair; returns `out`."""
    import torch
    from transformers import AutoModelForImageTextToText

    weights = state_dict_from_gguf(text, mmproj, root=root)
    model = AutoModelForImageTextToText.from_pretrained(template, dtype=torch.float32)
    expected = model.state_dict()
    if model.config.get_text_config().tie_word_embeddings:
        weights.setdefault("lm_head.weight", weights["model.language_model.embed_tokens.weight"])
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise GGUFImportError(f"the GGUF pair does not fit {template}: missing {missing[:3]}, extra {extra[:3]}")
    for name, tensor in expected.items():
        if tuple(weights[name].shape) != tuple(tensor.shape):
            got = tuple(weights[name].shape)
            raise GGUFImportError(f"{name}: the GGUF holds {got}, {template} wants {tuple(tensor.shape)}")
    model.load_state_dict(weights)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(template, tmp)
    for stale in tmp.glob("model*.safetensors*"):
        stale.unlink()
    model.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
