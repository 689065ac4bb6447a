"""Dedicated stage-1 embedder: a CLIP or SigLIP vision tower exported to ONNX and run with onnxruntime.

`OnnxEmbedder(model_dir)` implements the `Embedder` protocol of `rrg_local.concepts.embeddings` from a
folder holding `model.onnx` (float32 NCHW pixels, already normalised, in; one embedding per image out) and
`embedder.json` (an `EmbedderSpec`: input size, resize and crop, mean and std, embedding width).
`trainer.tiny_clip` writes such folders, for tiny random models and for real downloaded weights alike.

Pure (values in, values out): `EmbedderSpec`, `resize_crop`, `preprocess`, `l2_normalise`. I/O: the
class, which hashes the model file for its `name`, opens an onnxruntime session at construction (a missing
or corrupt model fails there, not once per photo) and decodes photos with `rrg_local.vlm.images.prepare`
(guarded decode, EXIF orientation, size cap). onnxruntime is imported only inside the class, and torch
never, so importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rrg_local.library.images import ImageError
from rrg_local.vlm.images import prepare
from rrg_local.vlm.protocol import ImageRef, VisionError

MODEL_FILE = "model.onnx"
SPEC_FILE = "embedder.json"
SPEC_VERSION = 1
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
CROPS = ("center", "squash")
DEFAULT_MAX_PIXELS = 150_000_000  # the same decompression-bomb guard as `Settings.max_pixels`


class OnnxEmbedderError(VisionError):
    """A model folder or a photo that the ONNX embedder cannot use; the message names the file."""


@dataclass(frozen=True)
class EmbedderSpec:
    """How to turn a photo into the model's input, and what comes out (`embedder.json`)."""

    image_size: int  # the model's square input side
    embedding_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bicubic"  # a key of RESAMPLE
    crop: str = "center"  # "center": short side to `resize_short`, then a centred square; "squash": plain resize
    resize_short: int | None = None  # "center" only; None: `image_size`
    family: str = "clip"
    source: str = ""  # what was exported (an HF folder's name), for humans
    input_name: str = "pixel_values"
    output_name: str = "image_embeds"
    version: int = SPEC_VERSION

    def __post_init__(self):
        if self.resample not in RESAMPLE:
            raise ValueError(f"resample {self.resample!r} is not one of {', '.join(RESAMPLE)}")
        if self.crop not in CROPS:
            raise ValueError(f"crop {self.crop!r} is not one of {', '.join(CROPS)}")
        if self.image_size < 1 or self.embedding_dim < 1:
            raise ValueError("image_size and embedding_dim must be positive")
        if (self.resize_short or self.image_size) < self.image_size:
            raise ValueError(f"resize_short {self.resize_short} is smaller than the crop {self.image_size}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EmbedderSpec:
        """Parse `embedder.json`; unknown keys are an error, so a newer format is not silently misread.

        >>> spec = EmbedderSpec(64, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        >>> EmbedderSpec.from_json(spec.to_json()) == spec
        True
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("version") != SPEC_VERSION:
            raise ValueError(f"format version {data.get('version')!r}, expected {SPEC_VERSION}")
        data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
        return cls(**data)


def resize_crop(img: Image.Image, spec: EmbedderSpec) -> Image.Image:
    """The model's square input (pure), as transformers' CLIP/SigLIP image processors size it.

    >>> spec = EmbedderSpec(64, 8, (0.5,) * 3, (0.5,) * 3)
    >>> resize_crop(Image.new("RGB", (320, 240)), spec).size
    (64, 64)
    """
    side = spec.image_size
    resample = RESAMPLE[spec.resample]
    if spec.crop == "squash":
        return img.resize((side, side), resample)
    short = spec.resize_short or side
    w, h = img.size
    # transformers truncates the long side (int), and crops at the floor of the centred offset
    size = (short, max(short, int(short * h / w))) if w <= h else (max(short, int(short * w / h)), short)
    img = img.resize(size, resample)
    left, top = (size[0] - side) // 2, (size[1] - side) // 2
    return img.crop((left, top, left + side, top + side))


def preprocess(img: Image.Image, spec: EmbedderSpec) -> np.ndarray:
    """RGB image -> float32 (3, S, S): resized, cropped, scaled to [0, 1] and normalised (pure).

    >>> spec = EmbedderSpec(4, 8, (0.5,) * 3, (0.5,) * 3, crop="squash")
    >>> x = preprocess(Image.new("RGB", (8, 6), (255, 0, 255)), spec)
    >>> x.shape, x.dtype.name, x[:, 0, 0].tolist()
    ((3, 4, 4), 'float32', [1.0, -1.0, 1.0])
    """
    arr = np.asarray(resize_crop(img.convert("RGB"), spec), dtype=np.float32) / 255.0
    arr = (arr - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def l2_normalise(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (zero rows stay zero), as float32 (pure).

    >>> l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def model_digest(model_dir: Path) -> str:
    """sha256 of the model file (and its external weights file, if the export needed one)."""
    digest = hashlib.sha256()
    external = model_dir / (MODEL_FILE + ".data")
    for path in [model_dir / MODEL_FILE] + ([external] if external.exists() else []):
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def load_spec(model_dir: Path) -> EmbedderSpec:
    path = model_dir / SPEC_FILE
    try:
        return EmbedderSpec.from_json(path.read_text())
    except FileNotFoundError as exc:
        raise OnnxEmbedderError(f"no embedder model at {model_dir}: {SPEC_FILE} is missing") from exc
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise OnnxEmbedderError(f"unusable {path}: {exc}") from exc


def default_threads() -> int:
    """A few cores at most: the embedder shares the machine with the scanner and the TUI."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


def _describe(ref: ImageRef) -> str:
    src = ref.source
    if isinstance(src, Image.Image):
        return "image"
    if isinstance(src, bytes):
        return f"image ({len(src)} bytes)"
    return str(src)


class OnnxEmbedder:
    """Embeds photos with an exported vision tower; thread-safe (onnxruntime sessions are)."""

    def __init__(
        self,
        model_dir: Path | str,
        *,
        threads: int | None = None,
        batch: int = 16,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.model_dir = Path(model_dir).resolve()
        self.spec = load_spec(self.model_dir)
        self.batch = max(1, batch)
        self.max_pixels = max_pixels
        # Decoded photos are capped at twice the input side: enough for a clean second resize, and JPEGs
        # then decode at a reduced scale.
        self.max_side = 2 * max(self.spec.image_size, self.spec.resize_short or 0)
        model_path = self.model_dir / MODEL_FILE
        try:
            digest = model_digest(self.model_dir)
        except FileNotFoundError as exc:
            raise OnnxEmbedderError(f"no embedder model at {self.model_dir}: {MODEL_FILE} is missing") from exc
        except OSError as exc:
            raise OnnxEmbedderError(f"cannot read model {model_path}: {exc.strerror or exc}") from exc
        self.name = f"onnx:{self.model_dir.name}:{digest[:8]}"
        self._session = self._open(model_path, threads or default_threads())

    def _open(self, model_path: Path, threads: int):
        try:
            import onnxruntime as ort
            from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
        except ImportError as exc:
            raise OnnxEmbedderError(
                f"the embedder {self.model_dir} needs onnxruntime: pip install 'rrg-local[embed]'"
            ) from exc

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: warnings must not reach the terminal UI
        try:
            session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except (
            ort_errors.Fail,
            ort_errors.InvalidProtobuf,
            ort_errors.InvalidGraph,
            ort_errors.InvalidArgument,
            ort_errors.NoSuchFile,
            ort_errors.RuntimeException,
        ) as exc:
            raise OnnxEmbedderError(f"corrupt or unsupported model {model_path}: {str(exc).splitlines()[0]}") from exc
        inputs = {i.name: i.shape for i in session.get_inputs()}
        outputs = {o.name: o.shape for o in session.get_outputs()}
        side = self.spec.image_size
        if inputs.get(self.spec.input_name, [None])[1:] != [3, side, side]:
            raise OnnxEmbedderError(f"{model_path} does not take {self.spec.input_name} of 3x{side}x{side}: {inputs}")
        if outputs.get(self.spec.output_name, [None])[-1:] != [self.spec.embedding_dim]:
            raise OnnxEmbedderError(f"{model_path} has no {self.spec.output_name} of {self.spec.embedding_dim}")
        return session

    def pixels(self, image: ImageRef) -> np.ndarray:
        """The model's input for one photo, float32 (3, S, S). Raises OnnxEmbedderError for a bad image."""
        try:
            prepared = prepare(image, max_side=self.max_side, max_pixels=self.max_pixels)
        except ImageError as exc:
            raise OnnxEmbedderError(f"cannot embed {_describe(image)}: {exc.reason}") from exc
        rgb = Image.frombytes("RGB", (prepared.width, prepared.height), prepared.rgb)
        return preprocess(rgb, self.spec)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """The model's raw output for a float32 (N, 3, S, S) batch: (N, dim), not normalised."""
        out = self._session.run([self.spec.output_name], {self.spec.input_name: pixels.astype(np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(pixels), -1)

    def embed(self, image: ImageRef) -> np.ndarray:
        """One photo's L2-normalised float32 embedding."""
        return self.embed_many([image])[0]

    def embed_many(self, images: Sequence[ImageRef]) -> np.ndarray:
        """L2-normalised embeddings (N, dim), run `batch` photos at a time; a bad photo raises for all."""
        rows = []
        for start in range(0, len(images), self.batch):
            chunk = np.stack([self.pixels(ref) for ref in images[start : start + self.batch]])
            rows.append(self.run(chunk))
        if not rows:
            return np.zeros((0, self.spec.embedding_dim), dtype=np.float32)
        return l2_normalise(np.concatenate(rows))
