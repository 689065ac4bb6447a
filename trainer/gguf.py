"""HF -> GGUF export: llama.cpp's own converter (text model + mmproj projector) and in-process quantization.

Callers: `trainer.tiny` (tiny test models) and the `rrg-train` CLI (`fetch-converter`, later `export`).

The converter is the Python one shipped inside the llama-cpp-python sdist of the *installed* version, so the
GGUF files always match the llama.cpp that loads them. `fetch_converter` is a set-up step (it needs PyPI,
via `pip download`) that copies it into the build cache; `converter_dir` only looks it up and raises
`ConverterMissing` naming the command to run, so nothing downloads implicitly. Conversion runs in a
subprocess (`python -c` + a small driver) that puts the converter and its `gguf-py` first on `sys.path`.
`quantize` calls `llama_cpp.llama_model_quantize` in this process.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainer.cache import atomic_dir, cache_root, package_version

SDIST_VENDOR = "vendor/llama.cpp/"
# What the converter needs: the driver script, the per-architecture `conversion` package (newer llama.cpp),
# the bundled `gguf` package, and the chat templates some architectures read from `models/templates`.
CONVERTER_PARTS = (
    "convert_hf_to_gguf.py",
    "convert_lora_to_gguf.py",
    "conversion/",
    "gguf-py/gguf/",
    "models/templates/",
)
CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
LORA_SCRIPT = "convert_lora_to_gguf.py"
FETCH_COMMAND = "rrg-train fetch-converter"
OUTTYPES = ("f32", "f16", "bf16", "q8_0")

# Runs inside the converter subprocess. argv: converter_dir, fallback_pre, then one job per 5 args
# (model_dir, outfile, outtype, "text"|"mmproj", model_name or ""). All jobs share one interpreter, so torch
# and transformers are imported once. The pre-tokenizer fallback only applies when the converter does not
# recognise the tokenizer's hash (a locally trained BPE); known models keep the converter's own answer.
_DRIVER = """
import runpy, sys
conv_dir, fallback_pre, *jobs = sys.argv[1:]
sys.path[:0] = [conv_dir, conv_dir + "/gguf-py"]
from conversion.base import TextModel
_orig = TextModel.get_vocab_base_pre
def _pre(self, tokenizer):
    try:
        return _orig(self, tokenizer)
    except NotImplementedError:
        if not fallback_pre:
            raise
        print(f"rrg: unknown BPE pre-tokenizer hash, using {fallback_pre!r}", file=sys.stderr)
        return fallback_pre
TextModel.get_vocab_base_pre = _pre
main = runpy.run_path(conv_dir + "/convert_hf_to_gguf.py", run_name="rrg_converter")["main"]
for i in range(0, len(jobs), 5):
    model_dir, outfile, outtype, kind, name = jobs[i:i + 5]
    sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outfile", outfile, "--outtype", outtype]
    if kind == "mmproj":
        sys.argv.append("--mmproj")
    if name:
        sys.argv += ["--model-name", name]
    main()
"""


class ConverterMissing(RuntimeError):
    """The llama.cpp converter for the installed llama-cpp-python is not in the cache."""


class ConversionError(RuntimeError):
    """The converter subprocess failed; the message carries its last stderr lines."""


@dataclass(frozen=True)
class GGUFPair:
    """A text-model GGUF and the matching vision projector (mmproj) GGUF."""

    text: Path
    mmproj: Path


@dataclass(frozen=True)
class ConvertJob:
    """One converter run: `hf_dir` -> `outfile` at `outtype`, the text model or (`mmproj=True`) the projector.

    `model_name` goes into `general.name` (the converter otherwise derives it from the folder name).
    """

    hf_dir: Path
    outfile: Path
    outtype: str = "f16"
    mmproj: bool = False
    model_name: str | None = None


def llama_cpp_version() -> str:
    version = package_version("llama-cpp-python")
    if version == "absent":
        raise ConverterMissing("llama-cpp-python is not installed (install the `vlm` extra)")
    return version


def converter_dir(root: Path | None = None) -> Path:
    """The cached converter folder for the installed llama-cpp-python; raises `ConverterMissing` if absent."""
    path = (root or cache_root()) / f"llama.cpp-{llama_cpp_version()}"
    if not (path / CONVERTER_SCRIPT).is_file():
        raise ConverterMissing(
            f"llama.cpp's GGUF converter is not cached at {path}; run `{FETCH_COMMAND}` once (needs PyPI)"
        )
    return path


def _extract_converter(sdist: Path, dest: Path) -> None:
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            _, _, rel = member.name.partition("/")
            if not rel.startswith(SDIST_VENDOR):
                continue
            inner = rel[len(SDIST_VENDOR) :]
            if ".." in Path(inner).parts or not (member.isfile() or member.isdir()):
                continue
            if any(inner == p or (p.endswith("/") and inner.startswith(p)) for p in CONVERTER_PARTS):
                member.name = inner
                members.append(member)
        if not any(m.name == CONVERTER_SCRIPT for m in members):
            raise ConverterMissing(f"{sdist} has no {SDIST_VENDOR}{CONVERTER_SCRIPT}")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4; the checks above cover older ones
            tar.extractall(dest, members=members, filter="data")
        else:
            tar.extractall(dest, members=members)


def fetch_converter(root: Path | None = None, *, sdist: Path | None = None) -> Path:
    """Copy llama.cpp's converter for the installed llama-cpp-python into the cache (set-up step, needs PyPI).

    `sdist` is an already downloaded `llama_cpp_python-<version>.tar.gz`; without it the sdist is fetched with
    `pip download --no-binary :all: --no-deps llama-cpp-python==<version>`.
    """
    version = llama_cpp_version()
    final = (root or cache_root()) / f"llama.cpp-{version}"
    if all((final / script).is_file() for script in (CONVERTER_SCRIPT, LORA_SCRIPT)):
        return final
    if final.exists():  # an older cache entry without every part: fetch again
        shutil.rmtree(final)
    with tempfile.TemporaryDirectory(prefix="rrg-sdist-") as tmp:
        if sdist is None:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"]
            cmd += ["--dest", tmp, f"llama-cpp-python=={version}"]
            try:
                subprocess.run(cmd, check=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise ConverterMissing(f"could not download the llama-cpp-python {version} sdist: {exc}") from exc
            found = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
            if not found:
                raise ConverterMissing(f"pip download left no llama-cpp-python {version} sdist in {tmp}")
            sdist = found[0]
        with atomic_dir(final) as staging:
            _extract_converter(Path(sdist), staging)
    return final


def run_converter(
    jobs: Sequence[ConvertJob],
    *,
    fallback_pre: str | None = None,
    root: Path | None = None,
    timeout: float | None = None,
) -> list[Path]:
    """Run all `jobs` in one converter subprocess; return their output files (removed again on failure).

    `fallback_pre` names the llama.cpp pre-tokenizer to use when the tokenizer's hash is unknown (a locally
    trained BPE with Qwen2's pre-tokenizer needs "qwen2"); None keeps the converter's hard failure, which is
    right for real models: their known hash picks the pre-tokenizer, and a wrong one would tokenize silently
    differently.
    """
    for job in jobs:
        if job.outtype not in OUTTYPES:
            raise ValueError(f"outtype {job.outtype!r} is not one of {OUTTYPES}")
        job.outfile.parent.mkdir(parents=True, exist_ok=True)
    conv = converter_dir(root)
    argv = [sys.executable, "-c", _DRIVER, str(conv), fallback_pre or ""]
    for job in jobs:
        argv += [
            str(job.hf_dir),
            str(job.outfile),
            job.outtype,
            "mmproj" if job.mmproj else "text",
            job.model_name or "",
        ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=conv)
    missing = [job.outfile for job in jobs if not job.outfile.is_file()]
    if proc.returncode != 0 or missing:
        for job in jobs:
            job.outfile.unlink(missing_ok=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ConversionError(f"llama.cpp converter failed (exit {proc.returncode}) on {jobs[0].hf_dir}:\n{tail}")
    return [job.outfile for job in jobs]


def convert(
    hf_dir: Path,
    out_dir: Path,
    outtype: str = "f16",
    *,
    mmproj_outtype: str | None = None,
    name: str | None = None,
    fallback_pre: str | None = None,
    root: Path | None = None,
) -> GGUFPair:
    """Convert an HF vision-language model folder to `<name>-<outtype>.gguf` + `mmproj-<name>-<outtype>.gguf`."""
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    stem = name or hf_dir.name
    mm_type = mmproj_outtype or outtype
    text = ConvertJob(hf_dir, out_dir / f"{stem}-{outtype}.gguf", outtype, model_name=name)
    mmproj = ConvertJob(hf_dir, out_dir / f"mmproj-{stem}-{mm_type}.gguf", mm_type, mmproj=True, model_name=name)
    run_converter([text, mmproj], fallback_pre=fallback_pre, root=root)
    return GGUFPair(text=text.outfile, mmproj=mmproj.outfile)


def convert_lora(
    base_hf_dir: Path, adapter_dir: Path, outfile: Path, outtype: str = "f16", *, root: Path | None = None
) -> Path:
    """A peft LoRA adapter -> a GGUF LoRA that llama.cpp applies at load time (`Llama(lora_path=...)`).

    The converter reads the adapter's model card and config for metadata: peft writes the base model's local
    path there, which would then ship inside the GGUF (as a "https://huggingface.co//home/..." base model) and
    make the same adapter convert differently from another folder. It converts a copy without them.
    """
    conv = converter_dir(root)
    if not (conv / LORA_SCRIPT).is_file():
        raise ConverterMissing(f"{conv} has no {LORA_SCRIPT}; run `{FETCH_COMMAND}` again")
    outfile.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = _stage_adapter(Path(adapter_dir), Path(tmp) / "adapter")
        argv = [
            sys.executable,
            str(conv / LORA_SCRIPT),
            "--base",
            str(base_hf_dir),
            "--outfile",
            str(outfile),
            "--outtype",
            outtype,
            str(staged),
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=conv)
    if proc.returncode != 0 or not outfile.is_file():
        outfile.unlink(missing_ok=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ConversionError(f"llama.cpp LoRA converter failed (exit {proc.returncode}) on {adapter_dir}:\n{tail}")
    return outfile


def _stage_adapter(adapter_dir: Path, dest: Path) -> Path:
    """`dest`: the adapter's weights (linked) and its config without the base model's path; no model card."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ConversionError(f"not a peft LoRA adapter: {adapter_dir}/adapter_config.json is missing")
    dest.mkdir()
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config.pop("base_model_name_or_path", None)  # the converter is given `--base` instead
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=1))
    for weights in adapter_dir.glob("adapter_model.*"):
        (dest / weights.name).symlink_to(weights.resolve())
    return dest


def quantize(src: Path, dst: Path, qtype: str, *, n_threads: int = 1) -> Path:
    """Quantize a GGUF (text model or mmproj) to `qtype` ("Q8_0", "Q4_K_M", "F16", ...) with llama.cpp.

    Any `LLAMA_FTYPE_MOSTLY_*` name works. Quantize a text model from its f32 GGUF and an mmproj from its f16
    one: tensors the type cannot hold (rows not a multiple of the block size) keep their source type.
    """
    import llama_cpp

    ftype = getattr(llama_cpp, "LLAMA_FTYPE_ALL_F32" if qtype == "F32" else f"LLAMA_FTYPE_MOSTLY_{qtype}", None)
    if not isinstance(ftype, int) or qtype != qtype.upper():
        raise ValueError(f"unknown llama.cpp quantization type {qtype!r} (e.g. Q8_0, Q4_K_M, F16)")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = n_threads
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        dst.unlink(missing_ok=True)
        raise ConversionError(f"llama_model_quantize({src.name} -> {qtype}) failed with code {rc}")
    return dst
