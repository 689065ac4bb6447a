"""CLIP/SigLIP vision towers exported to ONNX for `rrg_local.concepts.onnx_embedder`, and tiny random ones to test.

One export path for every model: `export_to(hf_dir, dest)` loads the vision tower of a local transformers
folder (a full `CLIPModel`/`SiglipModel` checkpoint as downloaded, or a vision-only one), exports
pixels -> embedding (CLIP: the projected `image_embeds`; SigLIP: the attention-pooled `pooler_output`)
with torch's ONNX exporter (dynamo, opset 18, dynamic batch), writes `embedder.json` from the folder's
`preprocessor_config.json`, and checks onnxruntime against torch on a random batch. `export_hf` does the
same into a new folder atomically; that is what a person with downloaded weights runs:

    .venv/bin/python -m trainer.tiny_clip export ~/models/clip-vit-base-patch16 ~/models/clip-b16-onnx

`tiny_clip(config)` builds a seeded random full CLIP (or SigLIP) folder with `build_hf` and exports it the
same way, cached by `trainer.cache` (key: the config, this file's source, the exporter's versions).
`CLIP_B16` has ViT-B/16's vision shapes (86 M parameters, random weights): its cost per photo is the real
dedicated embedder's. `python -m trainer.tiny_clip tiny --size b16` builds it and prints the folder.
Pure: `spec_from_configs`. Everything else needs torch and transformers (the `convert` extra), imported
inside the functions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrg_local.concepts.onnx_embedder import MODEL_FILE, SPEC_FILE, SPEC_VERSION, EmbedderSpec
from trainer.cache import atomic_dir, cached_build, package_version
from trainer.tiny import CLIP_MEAN, CLIP_STD

if TYPE_CHECKING:
    import torch

CACHE_NAME = "tiny-clip"
EXPORT_FILE = "export.json"  # parity numbers and versions of the export, for humans
OPSET = 18
PARITY_RTOL = 1e-3  # onnxruntime vs torch, max abs difference over the largest output magnitude
SIGLIP_MEAN = [0.5, 0.5, 0.5]
SIGLIP_STD = [0.5, 0.5, 0.5]
PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
FAMILIES = {"clip": "clip", "clip_vision_model": "clip", "siglip": "siglip", "siglip_vision_model": "siglip"}
# The text tower of a tiny full checkpoint: never exported, only there so the folder has a real layout.
TINY_TEXT = {
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 16,
    "bos_token_id": 1,  # inside the tiny vocabulary (transformers warns about CLIP's 49406 otherwise)
    "eos_token_id": 2,
    "pad_token_id": 1,
}


@dataclass(frozen=True)
class TinyClipConfig:
    """Shape of a random vision tower. Defaults: a 64 px CLIP, 2 layers of 32 wide, 32-d embeddings (~30 k params)."""

    seed: int = 0
    family: str = "clip"  # or "siglip" (no projection: the embedding is `hidden_size` wide)
    image_size: int = 64
    patch_size: int = 16
    hidden_size: int = 32
    intermediate_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    projection_dim: int = 32


# openai/clip-vit-base-patch16's vision tower: 86 M parameters, 224 px, 196 patches + CLS, 512-d projection.
CLIP_B16 = TinyClipConfig(
    image_size=224,
    patch_size=16,
    hidden_size=768,
    intermediate_size=3072,
    num_layers=12,
    num_heads=12,
    projection_dim=512,
)
SIZES = {"tiny": TinyClipConfig(), "siglip": TinyClipConfig(family="siglip"), "b16": CLIP_B16}


@dataclass(frozen=True)
class ExportResult:
    model_dir: Path
    spec: EmbedderSpec
    max_abs_diff: float  # onnxruntime vs torch on a random batch
    max_abs_output: float


def model_family(config: dict[str, Any]) -> str:
    """ "clip" or "siglip" from a `config.json`; anything else is refused with the reason."""
    family = FAMILIES.get(config.get("model_type", ""))
    if family is None:
        raise ValueError(
            f"model_type {config.get('model_type')!r} is not supported: CLIP and SigLIP (not SigLIP 2) only"
        )
    return family


def _side(value: Any, *keys: str) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in keys:
            if key in value:
                return int(value[key])
    return None


def spec_from_configs(
    config: dict[str, Any], preprocessor: dict[str, Any] | None, embedding_dim: int, source: str = ""
) -> EmbedderSpec:
    """The `EmbedderSpec` of an HF folder from its `config.json` and `preprocessor_config.json` (pure).

    >>> clip = {"model_type": "clip", "vision_config": {"image_size": 224}}
    >>> pp = {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
    ...       "resample": 3, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    >>> s = spec_from_configs(clip, pp, 512)
    >>> s.image_size, s.crop, s.resize_short, s.resample, s.output_name
    (224, 'center', 256, 'bicubic', 'image_embeds')
    >>> s = spec_from_configs({"model_type": "siglip_vision_model", "image_size": 384}, None, 768)
    >>> s.crop, s.image_size, s.mean, s.output_name
    ('squash', 384, (0.5, 0.5, 0.5), 'pooler_output')
    """
    family = model_family(config)
    vision = config.get("vision_config") or config
    side = int(vision.get("image_size", 224))
    pp = preprocessor or {}
    default_mean, default_std = (CLIP_MEAN, CLIP_STD) if family == "clip" else (SIGLIP_MEAN, SIGLIP_STD)
    crop = "center" if pp.get("do_center_crop", family == "clip") else "squash"
    size = pp.get("size")
    if crop == "center":
        crop_side = _side(pp.get("crop_size"), "height", "shortest_edge") or side
        resize_short = _side(size, "shortest_edge", "height") or crop_side
    else:
        crop_side = _side(size, "height", "shortest_edge") or side
        resize_short = None
        if isinstance(size, dict) and size.get("width", crop_side) != crop_side:
            raise ValueError(f"non-square resize {size} is not supported")
    if crop_side != side:
        raise ValueError(f"the preprocessor makes {crop_side} px inputs but the model takes {side} px")
    resample = PIL_RESAMPLE.get(pp.get("resample", 3))
    if resample is None:
        raise ValueError(f"unknown resample {pp.get('resample')!r}")
    return EmbedderSpec(
        image_size=side,
        embedding_dim=embedding_dim,
        mean=tuple(float(v) for v in pp.get("image_mean", default_mean)),
        std=tuple(float(v) for v in pp.get("image_std", default_std)),
        resample=resample,
        crop=crop,
        resize_short=resize_short,
        family=family,
        source=source,
        output_name="image_embeds" if family == "clip" else "pooler_output",
    )


def preprocessor_config(config: TinyClipConfig) -> dict:
    """The `preprocessor_config.json` the real checkpoints of `config.family` ship, at `config.image_size`."""
    side = config.image_size
    common = {"do_resize": True, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True}
    if config.family == "clip":
        return {
            "image_processor_type": "CLIPImageProcessor",
            **common,
            "size": {"shortest_edge": side},
            "do_center_crop": True,
            "crop_size": {"height": side, "width": side},
            "do_convert_rgb": True,
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
        }
    return {
        "image_processor_type": "SiglipImageProcessor",
        **common,
        "size": {"height": side, "width": side},
        "image_mean": SIGLIP_MEAN,
        "image_std": SIGLIP_STD,
    }


def build_hf(out_dir: Path, config: TinyClipConfig = TinyClipConfig()) -> Path:
    """Write a seeded random full CLIP (or SigLIP) checkpoint folder for `config`, as a download would look."""
    import torch
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    vision = {
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
    }
    if config.family == "clip":
        cls, hf = (
            CLIPModel,
            CLIPConfig(text_config=TINY_TEXT, vision_config=vision, projection_dim=config.projection_dim),
        )
    elif config.family == "siglip":
        cls, hf = SiglipModel, SiglipConfig(text_config=TINY_TEXT, vision_config=vision)
    else:
        raise ValueError(f"unknown family {config.family!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # seed our init without moving the caller's RNG
        torch.manual_seed(config.seed)
        model = cls._from_config(hf, dtype=torch.float32)
    model.save_pretrained(out_dir)
    (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(config), indent=2) + "\n")
    return out_dir


def load_vision(hf_dir: Path) -> tuple[torch.nn.Module, str]:
    """The folder's vision tower as a module `pixel_values -> embedding`, in eval mode, and its family.

    Refuses a folder whose vision weights do not all load: a silently random tower would export garbage.
    """
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, SiglipVisionModel
    from transformers.utils import logging as hf_logging

    config = json.loads((Path(hf_dir) / "config.json").read_text())
    family = model_family(config)
    cls = CLIPVisionModelWithProjection if family == "clip" else SiglipVisionModel
    kwargs = {}
    if config["model_type"] == "clip":
        # A full checkpoint keeps `projection_dim` at the top level, and transformers builds the vision config
        # from `vision_config` alone (default 512): without this, a 768-d projection (ViT-L) fails to load.
        vision = CLIPVisionConfig.from_pretrained(hf_dir)
        vision.projection_dim = config.get("projection_dim", vision.projection_dim)
        kwargs["config"] = vision
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a full checkpoint's text weights are "unexpected": hundreds of lines
    try:
        model, info = cls.from_pretrained(
            hf_dir, output_loading_info=True, dtype=torch.float32, attn_implementation="eager", **kwargs
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    bad = sorted(info.get("missing_keys", [])) + sorted(str(k) for k in info.get("mismatched_keys", []))
    if bad:
        raise ValueError(f"{hf_dir}: vision weights missing or misshapen: {', '.join(bad[:5])}")

    class VisionEmbedding(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            out = self.inner(pixel_values=pixel_values)
            return out.image_embeds if family == "clip" else out.pooler_output

    return VisionEmbedding(model).eval(), family


def export_onnx(module: torch.nn.Module, spec: EmbedderSpec, path: Path, *, opset: int = OPSET) -> None:
    """Export `module` (float32 NCHW -> (N, dim)) to one ONNX file with a dynamic batch axis."""
    import torch

    example = torch.zeros(2, 3, spec.image_size, spec.image_size)
    n_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    with torch.no_grad(), warnings.catch_warnings():
        # torch's own exporter trips its own pytree deprecation; nothing for a caller to act on
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[spec.input_name],
            output_names=[spec.output_name],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=opset,
            dynamo=True,
            external_data=n_bytes > 1_800_000_000,  # protobuf's 2 GB limit; below it, one self-contained file
            optimize=True,
            verbose=False,
        )


def check_parity(module: torch.nn.Module, model_path: Path, pixels) -> tuple[float, float]:
    """(max abs difference, max abs output) between onnxruntime and torch on a float32 NCHW batch."""
    import numpy as np
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: np.asarray(pixels, dtype=np.float32)})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(np.asarray(pixels, dtype=np.float32))).numpy()
    return float(np.abs(got - want).max()), float(np.abs(want).max())


def export_checked(module: torch.nn.Module, spec: EmbedderSpec, dest: Path, *, what: str, opset: int = OPSET):
    """`model.onnx` + `embedder.json` in the existing folder `dest`, once onnxruntime agrees with torch on a random
    batch; returns (max abs difference, max abs output). `what` names the model in the error."""
    import numpy as np

    export_onnx(module, spec, dest / MODEL_FILE, opset=opset)
    pixels = np.random.default_rng(0).normal(size=(2, 3, spec.image_size, spec.image_size)).astype(np.float32)
    diff, scale = check_parity(module, dest / MODEL_FILE, pixels)
    if diff > PARITY_RTOL * max(scale, 1e-6):
        raise ValueError(f"ONNX export of {what} disagrees with torch: max abs diff {diff:.3g} (outputs {scale:.3g})")
    (dest / SPEC_FILE).write_text(spec.to_json())
    return diff, scale


def export_to(hf_dir: Path, dest: Path, *, opset: int = OPSET, source: str | None = None) -> ExportResult:
    """Export the vision tower of `hf_dir` into the existing folder `dest` and check it (see the module doc)."""
    import torch

    hf_dir, dest = Path(hf_dir), Path(dest)
    module, _ = load_vision(hf_dir)
    config = json.loads((hf_dir / "config.json").read_text())
    pp_path = hf_dir / "preprocessor_config.json"
    preprocessor = json.loads(pp_path.read_text()) if pp_path.exists() else None
    spec = spec_from_configs(config, preprocessor, embedding_dim=1, source=source or hf_dir.name)
    with torch.no_grad():
        dim = module(torch.zeros(1, 3, spec.image_size, spec.image_size)).shape[-1]
    spec = replace(spec, embedding_dim=int(dim))
    diff, scale = export_checked(module, spec, dest, opset=opset, what=str(hf_dir))
    report = {"max_abs_diff": diff, "max_abs_output": scale, "opset": opset, "versions": _exporter_versions()}
    (dest / EXPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return ExportResult(dest, spec, diff, scale)


def export_hf(hf_dir: Path, out_dir: Path, *, opset: int = OPSET) -> ExportResult:
    """`export_to` into a new folder `out_dir`, which appears only once the export is complete and checked."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists")
    with atomic_dir(out_dir) as tmp:
        result = export_to(hf_dir, tmp, opset=opset)
    return replace(result, model_dir=out_dir)


def _exporter_versions() -> dict[str, str]:
    return {name: package_version(name) for name in ("onnx", "onnxscript", "onnxruntime")}


def builder_version() -> str:
    """A digest of this file's source, part of every cache key (no manual bumps)."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def tiny_clip_parts(config: TinyClipConfig) -> dict:
    """Cache key parts; `trainer.cache` adds the torch and transformers versions."""
    return {"config": asdict(config), "builder": builder_version(), "spec": SPEC_VERSION, **_exporter_versions()}


def _build_entry(entry: Path, config: TinyClipConfig) -> None:
    export_to(build_hf(entry / "hf", config), entry, source=f"random {config.family} (trainer.tiny_clip)")


def tiny_clip(config: TinyClipConfig = TinyClipConfig(), *, root: Path | None = None) -> Path:
    """Build (or reuse from the cache) a random vision tower exported to ONNX; returns the `OnnxEmbedder` folder.

    The folder also holds `hf/`, the checkpoint it was exported from, for parity checks against torch.
    """
    return cached_build(tiny_clip_parts(config), lambda tmp: _build_entry(tmp, config), name=CACHE_NAME, root=root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.tiny_clip", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tiny = sub.add_parser("tiny", help="build (or find in the cache) a random model and print its folder")
    tiny.add_argument("--size", choices=sorted(SIZES), default="tiny")
    export = sub.add_parser("export", help="export a downloaded CLIP/SigLIP folder for the ONNX embedder")
    export.add_argument("hf_dir", type=Path)
    export.add_argument("out_dir", type=Path)
    export.add_argument("--opset", type=int, default=OPSET)
    args = parser.parse_args(argv)
    if args.command == "tiny":
        print(tiny_clip(SIZES[args.size]))
        return 0
    try:
        result = export_hf(args.hf_dir, args.out_dir, opset=args.opset)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{result.model_dir}  ({result.spec.embedding_dim}-d, max abs diff vs torch {result.max_abs_diff:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
