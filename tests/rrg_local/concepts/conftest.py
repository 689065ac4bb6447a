"""A small photo library with two concepts' reference photos and near-copies, indexed into real SQLite."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from PIL import Image

from rrg_local.concepts.embeddings import EmbeddingStore, VLMEmbedder
from rrg_local.concepts.store import ConceptStore
from rrg_local.library.scan import Scanner
from tests.conftest import draw_photo, exif_bytes


def save(path, img, taken, quality=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, exif=exif_bytes(taken))
    path.write_bytes(buf.getvalue())


@pytest.fixture
def library(tmp_path):
    """refs/bo{0,1,2} and refs/mug{0,1}; copies/ holds re-encoded copies of two Bo photos; others/ 6 photos."""
    lib = tmp_path / "lib"
    t0 = datetime(2023, 5, 1, 12)
    bo = [draw_photo(100 + i, (224, 168)) for i in range(3)]
    for i, img in enumerate(bo):
        save(lib / "refs" / f"bo{i}.jpg", img, t0 + timedelta(days=i))
    for i in range(2):
        save(lib / "refs" / f"mug{i}.jpg", draw_photo(200 + i, (224, 168)), t0 + timedelta(days=10 + i))
    for i in range(2):
        save(
            lib / "copies" / f"bo{i}-again.jpg",
            bo[i].resize((200, 150), Image.Resampling.LANCZOS),
            t0 + timedelta(days=30 + i),
            quality=70,
        )
    for i in range(6):
        save(lib / "others" / f"o{i}.jpg", draw_photo(300 + i, (224, 168)), t0 + timedelta(days=60 + i))
    return lib


@pytest.fixture
def indexed(library, db, settings):
    Scanner(db, settings).scan([library])

    def pid(rel: str) -> int:
        return db.execute("SELECT photo_id FROM paths WHERE path = ?", [str(library / rel)]).fetchone()[0]

    return pid


@pytest.fixture
def stores(db, settings, model):
    return ConceptStore(db), EmbeddingStore(db, VLMEmbedder(model), settings.thumbs_dir)
