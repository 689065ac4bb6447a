"""Faster, equivalent forwards for training the Qwen2-VL model on a CPU: owns `speed_up_vision` (the vision
tower) and `attention_kernel` (which SDPA kernel a training step runs under).

Two parts of the tower cost far more on a CPU than their arithmetic, measured on the demo model's stage A
(`bench/fast_forwards.py`):
- the patch embedding is a Conv3d whose kernel equals its stride, i.e. one matrix product per patch; oneDNN's
  3-D convolution (forward and above all backward) took 70% of a training step. Here it is that product:
  the flattened patch times the flattened kernel, the same weights.
- attention runs image by image (a Python loop of one small SDPA call per photo and block, as HF does for
  every implementation but flash attention). When every photo has as many patches (the demo's photos all
  have), the images are stacked into one batched SDPA call instead.

Both are the same mathematics in another order of summation: losses agree to about 1e-5 and gradients to
the bf16 rounding of the autocast. Nothing is stored differently: the parameters, the state dict, the saved
checkpoint and every export are the stock ones (the forwards are replaced on the loaded modules only), and
anything the fast path does not cover (photos of different sizes, attention dropout, flash attention)
falls back to the stock forward.

The third: torch's default SDPA kernel on a CPU is a flash kernel whose backward is slow for these short
sequences; the plain (math) kernel is faster there, in the tower and in the language model alike.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any


def attention_kernel(model: Any) -> Any:
    """The context a training or scoring forward of `model` (a whole model or its tower) runs under: on a
    CPU, for a model given `speed_up_vision`, the math SDPA kernel; otherwise torch's own choice (a GPU's
    flash kernels are what is fast there, and a stock model keeps its stock numerics)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cpu = next(model.parameters()).device.type == "cpu"
    fast = any(getattr(m, "_rrg_fast", False) for m in model.modules())
    return sdpa_kernel(SDPBackend.MATH) if cpu and fast else contextlib.nullcontext()


def speed_up_vision(model: Any) -> int:
    """Install the fast forwards on every Qwen2-VL patch embedding and vision attention in `model`; returns
    how many modules were changed (0 for a model with no Qwen2-VL tower, or an attention implementation
    that already batches, i.e. flash attention). Calling it again changes nothing more."""
    from transformers.models.qwen2_vl import modeling_qwen2_vl as qwen

    changed = 0
    for module in model.modules():
        if getattr(module, "_rrg_fast", False):
            continue
        if type(module) is qwen.PatchEmbed:
            fast = _patch_embed
        elif type(module) is qwen.VisionAttention and module.config._attn_implementation in ("sdpa", "eager"):
            fast = _attention
        else:
            continue
        module._rrg_stock, module._rrg_fast = module.forward, True
        module.forward = types.MethodType(fast, module)
        changed += 1
    return changed


def _patch_embed(self: Any, hidden_states: Any) -> Any:
    """PatchEmbed.forward as a matrix product: (patches, C*T*P*P) @ (C*T*P*P, embed_dim)."""
    import torch
    import torch.nn.functional as F

    if type(self.proj) is not torch.nn.Conv3d or self.proj.bias is not None:  # wrapped (an adapter): as it is
        return self._rrg_stock(hidden_states)

    weight = self.proj.weight  # (embed_dim, C, T, P, P): flattened, the same order as each patch's values
    return F.linear(hidden_states.to(weight.dtype).reshape(-1, weight[0].numel()), weight.flatten(1))


def _attention(self: Any, hidden_states: Any, cu_seqlens: Any, position_embeddings: Any = None,
               max_seqlen: Any = None, **kwargs: Any) -> Any:  # fmt: skip
    """VisionAttention.forward with the photos batched into one SDPA call when they are all of one length."""
    import torch.nn.functional as F
    from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    uniform = bool((lengths == lengths[0]).all()) if len(lengths) else False
    if not uniform or position_embeddings is None or (self.training and self.attention_dropout):
        return self._rrg_stock(hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
    n, photos = hidden_states.shape[0], len(lengths)
    q, k, v = self.qkv(hidden_states).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    q, k, v = (t.reshape(photos, n // photos, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, scale=self.scaling)  # (photos, heads, patches, head_dim)
    return self.proj(out.transpose(1, 2).reshape(n, -1))
