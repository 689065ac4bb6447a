"""What the training machine's CPU can do: owns `machine` (the CPU as a build records it) and `native_bf16`
(whether bf16 autocast is worth running there).

Both read the first CPU's lines of `/proc/cpuinfo` and the settings that cap oneDNN's and torch's kernels. The
instruction set moves the demo build's floats (`bench/build_determinism.py`: the same short build is bit for bit
the same under other transformers, Pillow and NumPy versions, not with oneDNN capped below this CPU's
AVX512-BF16) and its speed: with oneDNN capped below BF16, as on a CPU without bf16 instructions, bf16 autocast ran
that build 1.96x (AVX512_CORE) and 9.27x (AVX2) as long as uncapped, where f32 ran it at 1.32x and 1.22x.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The CPU features and settings that choose torch's and oneDNN's kernels, hence the build's rounding.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86's two; ARM's "Features" line says bf16


def cpu_info() -> dict[str, str]:
    """The first CPU's `/proc/cpuinfo` lines as a dict (empty where there is no such file)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_flags(info: dict[str, str] | None = None) -> set[str]:
    """The CPU's feature flags (x86 `flags`, ARM `Features`)."""
    info = cpu_info() if info is None else info
    return set((info.get("flags") or info.get("Features") or "").split())


def bf16_from(flags: set[str], cap: str = "") -> bool:
    """Whether a CPU with these flags, under this `ONEDNN_MAX_CPU_ISA` cap, computes bf16 in hardware.

    >>> bf16_from({"avx2", "avx512f", "avx512_bf16"})
    True
    >>> bf16_from({"avx2", "avx512f"}), bf16_from({"avx2", "avx512_bf16"}, "AVX2")
    (False, False)
    >>> bf16_from({"avx512_bf16"}, "AVX512_CORE_BF16"), bf16_from({"amx_bf16"}, "avx512_core_amx")
    (True, True)
    """
    capped = cap.strip().upper()
    if capped and capped not in ("ALL", "DEFAULT") and "BF16" not in capped and "AMX" not in capped:
        return False
    return bool(flags & BF16_FLAGS)


def native_bf16(device: str = "cpu") -> bool:
    """Whether bf16 autocast pays on `device`: a CUDA GPU that supports it, or a CPU with bf16 instructions
    (AVX512-BF16, AMX, ARM's BF16) and no cap below them. Elsewhere the autocast emulates bf16, far slower than
    f32 (the module's note)."""
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bf16_from(cpu_flags(), os.environ.get("ONEDNN_MAX_CPU_ISA", ""))


def machine() -> str:
    """The CPU this process runs on, for the build record: its name, cores, the instruction sets that pick
    torch's and oneDNN's kernels, and any setting that caps them (the module's note: they move the floats).

    >>> "cores" in machine() and "torch " in machine()
    True
    """
    import torch

    info = cpu_info()
    name = info.get("model name") or platform.processor() or platform.machine()
    flags = cpu_flags(info)
    isa = [f for f in ISA_FLAGS if f in flags]
    settings = [f"{k}={os.environ[k]}" for k in ISA_ENV if os.environ.get(k)]
    parts = [name, f"{os.cpu_count()} cores", *([" ".join(isa)] if isa else []),
             f"torch {torch.backends.cpu.get_cpu_capability()}", *settings]  # fmt: skip
    return ", ".join(parts)
