"""Fixtures of the TUI tests: a small real library indexed into the test's SQLite file."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from rrg_local.concepts.store import ConceptStore
from rrg_local.library.scan import Scanner
from tests.conftest import write_jpeg


@pytest.fixture
def library(settings, db, tmp_path):
    """Three photos (two in 2024 under beach/, one in 2023 under home/), one corrupt file, concept Bo
    with a suggested tag on photo 1. Returns (settings with the folder configured, Bo's photo id)."""
    root = tmp_path / "pictures"
    write_jpeg(root / "beach" / "bo1.jpg", 1, taken=datetime(2024, 6, 3, 10), camera=("Canon", "EOS R6"))
    write_jpeg(root / "beach" / "bo2.jpg", 2, taken=datetime(2024, 6, 4, 11), camera=("Canon", "EOS R6"))
    write_jpeg(root / "home" / "mug.jpg", 3, taken=datetime(2023, 1, 5, 9))
    (root / "home" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    settings = replace(settings, folders=(root,))
    Scanner(db, settings).scan([root])
    store = ConceptStore(db)
    bo = store.add("Bo", "dog")
    pid = db.execute("SELECT photo_id FROM paths WHERE path LIKE '%bo1.jpg'").fetchone()[0]
    store.write_tags(
        pid,
        [{"concept_id": bo.id, "score": 0.87, "stage1": 0.4, "reasoning": "white patch over the eye", "version": 1}],
        model="test",
    )
    db.conn.commit()
    return settings, pid
