"""The RRG trainer: reference-game self-play with GRPO and LoRA, and export to GGUF (GPU; see ARCHITECTURE.md).

May import torch; `rrg_local` never imports this package. Importing it turns the Hugging Face hub client
offline for this process (`HF_HUB_OFFLINE=1` unless the caller set it): the trainer reads local folders
only, and without this, importing bitsandbytes (a dependency of peft and transformers' 4-bit path) asks
huggingface.co for a CPU kernel through `kernels`.
"""

import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# What bitsandbytes and `kernels` then log at import (offline, the kernel "not in the local cache") is no news:
# bitsandbytes runs its own CPU code.
for _name in ("bitsandbytes.backends.cpu.ops", "kernels._internals.hf_hub"):
    logging.getLogger(_name).setLevel(logging.ERROR)
