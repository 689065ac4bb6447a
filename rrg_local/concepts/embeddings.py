"""Retrieval embeddings: the pluggable embedder, the SQLite cache of vectors, and cosine retrieval.

An `Embedder` maps a photo to an L2-normalised float32 vector. `VLMEmbedder` uses the runtime's own
vision tower (max-pooled over the photo's tokens); it is free to set up and, thanks to the runtime's image
cache, makes a later stage-2 call on the same thumbnail skip the encoder. Vectors are cached per (photo,
embedder name) and computed through the `embed` jobs, so an interrupted pass resumes. Pure helpers: `pack`,
`unpack`, `similarities`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
import sqlite_utils

from rrg_local.jobs import KIND_EMBED, Jobs
from rrg_local.vlm.protocol import ImageRef, VisionError, VisionModel


class Embedder(Protocol):
    name: str

    def embed(self, image: ImageRef) -> np.ndarray: ...


class VLMEmbedder:
    def __init__(self, model: VisionModel):
        self.model = model
        # ":maxpool": vectors cached under the earlier mean pooling are not mixed with these.
        self.name = f"vlm:{model.info.name}:{model.info.image_max_tokens or 'max'}:maxpool"

    def embed(self, image: ImageRef) -> np.ndarray:
        return self.model.embed_image(image)


def make_embedder(settings, model: VisionModel | None) -> Embedder:
    """The configured stage-1 embedder: an exported ONNX model if `settings.embedder` names one, else the VLM's."""
    if settings.embedder:
        from rrg_local.concepts.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(Path(settings.embedder).expanduser())
    if model is None:
        raise ValueError("no embedder: configure `embedder` or add a model (rrg model add ...)")
    return VLMEmbedder(model)


def pack(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


def similarities(query: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Cosine similarity of one normalised vector against rows of normalised vectors.

    >>> similarities(np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.0, 1.0]])).tolist()
    [1.0, 0.0]
    """
    if bank.size == 0:
        return np.zeros(0)
    return bank @ query


class EmbeddingStore:
    """Cached vectors per photo for one embedder; computes what is missing from the photo's thumbnail."""

    def __init__(self, db: sqlite_utils.Database, embedder: Embedder, thumbs_dir: Path):
        self.db = db
        self.embedder = embedder
        self.thumbs_dir = thumbs_dir

    def image(self, photo_id: int) -> ImageRef:
        """What the stages look at: the cached thumbnail (oriented, small), so the VLM encodes it once."""
        row = self.db.execute("SELECT thumb FROM photos WHERE id = ?", [photo_id]).fetchone()
        if row is None:
            raise KeyError(f"no photo {photo_id}")
        return ImageRef(self.thumbs_dir / row[0], orientation=1)

    def get(self, photo_id: int) -> np.ndarray:
        row = self.db.execute(
            "SELECT vector FROM embeddings WHERE photo_id = ? AND embedder = ?", [photo_id, self.embedder.name]
        ).fetchone()
        if row:
            return unpack(row[0])
        vector = np.asarray(self.embedder.embed(self.image(photo_id)), dtype=np.float32)
        self.db.execute(
            "INSERT OR REPLACE INTO embeddings (photo_id, embedder, vector) VALUES (?, ?, ?)",
            [photo_id, self.embedder.name, pack(vector)],
        )
        self.db.conn.commit()
        return vector

    def many(self, photo_ids: Iterable[int]) -> dict[int, np.ndarray]:
        return {pid: self.get(pid) for pid in photo_ids}

    def run_jobs(self, *, batch: int = 32, on_progress: Callable[[int], None] | None = None) -> int:
        """Compute embeddings for pending `embed` jobs; resumable. Returns how many were computed."""
        jobs = Jobs(self.db)
        jobs.recover(KIND_EMBED)
        done = 0
        while claimed := jobs.claim(KIND_EMBED, batch):
            for job in claimed:
                try:
                    self.get(job.photo_id)
                except (OSError, KeyError, VisionError) as exc:
                    jobs.fail(job, str(exc))
                    continue
                jobs.finish([job.id])
                done += 1
                if on_progress:
                    on_progress(done)
        return done

    def all_vectors(self) -> tuple[list[int], np.ndarray]:
        """Every cached vector of this embedder over photos that still exist (ids, matrix)."""
        rows = self.db.execute(
            "SELECT e.photo_id, e.vector FROM embeddings e JOIN photos p ON p.id = e.photo_id "
            "WHERE e.embedder = ? AND p.missing = 0 ORDER BY e.photo_id",
            [self.embedder.name],
        ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        return [r[0] for r in rows], np.stack([unpack(r[1]) for r in rows])
