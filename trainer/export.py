"""Export a training run for the local runtime: merge the LoRA, convert to GGUF + mmproj, quantize, manifest.

`rrg-train export RUN_DIR` calls `export_run()`. A run folder holds `run.json` (`{"base": HF_DIR, "name": ...,
"pre_tokenizer": ...}`) and `adapter/` (a peft adapter, `save_pretrained` layout). The export keeps the
adapter, writes the merged HF checkpoint to `export/hf/`, converts it with the same llama.cpp converter
the tiny test models use (`trainer.gguf`), quantizes the text model, converts the adapter alone to a GGUF
LoRA (for `rrg model add --lora` on the base model's GGUF), and writes `export/manifest.json`
(files, sizes, sha256, versions) plus the one `rrg model add` command that loads the result.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rrg_local.vlm.gguf_meta import file_sha256
from trainer.cache import atomic_dir, toolchain_versions
from trainer.gguf import convert, convert_lora, quantize

# Everything of the base folder but its weights: tokenizer, chat template, processor and generation configs.
_SIDE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "generation_config.json",
)


class ExportError(RuntimeError):
    """A run that cannot be exported; the message names the file."""


@dataclass(frozen=True)
class ExportResult:
    name: str
    hf_dir: Path
    text: Path  # the text GGUF at `outtype`
    mmproj: Path
    quantized: dict[str, Path] = field(default_factory=dict)
    lora: Path | None = None  # the adapter alone, for a runtime that applies it to the base at load time
    manifest: Path | None = None

    def add_command(self, quant: str | None = None) -> str:
        """The `rrg model add` line for the preferred file (the first quantization, else the plain GGUF)."""
        text = self.quantized.get(quant) if quant else next(iter(self.quantized.values()), self.text)
        return f"rrg model add {self.name} --gguf {text} --mmproj {self.mmproj}"


def read_run(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    try:
        run = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ExportError(f"not a training run: {path} is missing") from exc
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} is not valid JSON ({exc.msg})") from exc
    if not (run_dir / "adapter" / "adapter_config.json").is_file():
        raise ExportError(f"no LoRA adapter in {run_dir / 'adapter'} (adapter_config.json missing)")
    base = Path(run.get("base", ""))
    if not (base / "config.json").is_file():
        raise ExportError(f"the run's base model is not an HF folder: {base}")
    return run


def merge(base_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """Base + LoRA -> one HF checkpoint (weights merged), with the base's tokenizer and processor files."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    for name in _SIDE_FILES:
        if (base_dir / name).is_file():
            shutil.copy2(base_dir / name, out_dir / name)
    return out_dir


def export_run(
    run_dir: Path, *, quant: tuple[str, ...] = ("Q4_K_M",), outtype: str = "f16", name: str | None = None
) -> ExportResult:
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    name = name or run.get("name") or run_dir.name
    dest = run_dir / "export"
    if dest.exists():
        shutil.rmtree(dest)
    with atomic_dir(dest) as tmp:
        hf_dir = merge(Path(run["base"]), run_dir / "adapter", tmp / "hf")
        pair = convert(hf_dir, tmp / "gguf", outtype, name=name, fallback_pre=run.get("pre_tokenizer"))
        quantized = {q: quantize(pair.text, tmp / "gguf" / f"{name}-{q}.gguf", q) for q in quant}
        lora = convert_lora(
            Path(run["base"]), run_dir / "adapter", tmp / "gguf" / f"{name}-lora-{outtype}.gguf", outtype
        )
        files = {
            "text": pair.text,
            "mmproj": pair.mmproj,
            "lora": lora,
            **{f"text_{q}": p for q, p in quantized.items()},
        }
        manifest = {
            "name": name,
            "base": str(run["base"]),
            "adapter": str(run_dir / "adapter"),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": toolchain_versions(),
            "files": {
                k: {"path": str(dest / p.relative_to(tmp)), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
                for k, p in files.items()
            },
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    moved = lambda p: dest / p.relative_to(tmp)  # noqa: E731 - paths inside the folder just renamed
    return ExportResult(
        name=name,
        hf_dir=dest / "hf",
        text=moved(pair.text),
        mmproj=moved(pair.mmproj),
        quantized={q: moved(p) for q, p in quantized.items()},
        lora=moved(lora),
        manifest=dest / "manifest.json",
    )
