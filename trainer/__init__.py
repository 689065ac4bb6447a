"""The RRG trainer: reference-game self-play with GRPO and LoRA, and export to GGUF (GPU; see ARCHITECTURE.md).

May import torch; `rrg_local` never imports this package.
"""
