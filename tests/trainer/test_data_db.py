"""The trainer's second data source: a real rrg-local library database, indexed and curated like a user would."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rrg_local.concepts.store import ConceptStore
from rrg_local.library.scan import Scanner
from tests.conftest import write_jpeg
from trainer import data
from trainer.config import ConfigError, TrainConfig, load_config

# file -> seed; bo and rex are dogs, mug a cup. o0 gets confirmed as Bo, o1 rejected for Bo, gone.jpg deleted.
PHOTOS = {
    "bo0.jpg": 1, "bo1.jpg": 2, "rex0.jpg": 3, "rex1.jpg": 4, "mug0.jpg": 5, "mug1.jpg": 6,
    "o0.jpg": 7, "o1.jpg": 8, "o2.jpg": 9, "gone.jpg": 10,
}  # fmt: skip


def pixel_embedding(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        vec = np.asarray(im.convert("RGB").resize((8, 6)), dtype=np.float32).ravel() - 127.5
    return vec / np.linalg.norm(vec)


@pytest.fixture
def library_db(tmp_path, db, settings) -> tuple[Path, Path]:
    """(library folder, database file) with three concepts in two categories, curated through ConceptStore."""
    lib = tmp_path / "lib"
    for name, seed in PHOTOS.items():
        write_jpeg(lib / name, seed, size=(64, 48))
    Scanner(db, settings).scan([lib])

    def pid(name: str) -> int:
        return db.execute("SELECT photo_id FROM paths WHERE path = ?", [str(lib / name)]).fetchone()[0]

    store = ConceptStore(db)
    bo, rex, mug = store.add("Bo", "dog"), store.add("Rex", "dog"), store.add("mug", "cup")
    store.add_photos(bo, [pid("bo0.jpg"), pid("bo1.jpg")])
    store.add_photos(rex, [pid("rex0.jpg"), pid("rex1.jpg"), pid("gone.jpg")])
    store.add_photos(mug, [pid("mug0.jpg"), pid("mug1.jpg")])
    store.review(pid("o0.jpg"), bo, confirm=True)
    store.review(pid("o1.jpg"), bo, confirm=False)
    (lib / "gone.jpg").unlink()
    return lib, settings.db_path


def test_load_from_db_reads_positives_and_rejected_photos(library_db):
    lib, db_path = library_db
    examples, negatives = data.load_from_db(db_path)
    assert examples == [
        data.Example("Bo", "dog", lib / "bo0.jpg"),
        data.Example("Bo", "dog", lib / "bo1.jpg"),
        data.Example("Bo", "dog", lib / "o0.jpg"),  # confirmed
        data.Example("mug", "cup", lib / "mug0.jpg"),
        data.Example("mug", "cup", lib / "mug1.jpg"),
        data.Example("Rex", "dog", lib / "rex0.jpg"),
        data.Example("Rex", "dog", lib / "rex1.jpg"),  # gone.jpg is skipped: its file was deleted
    ]
    assert negatives == {"Bo": [lib / "o1.jpg"]}


def test_load_from_db_is_read_only_and_works_on_a_closed_library(library_db, db):
    _, db_path = library_db
    db.close()  # the last connection: SQLite checkpoints and removes the -wal/-shm files
    before = db_path.read_bytes()
    examples, negatives = data.load_from_db(db_path)
    assert len(examples) == 7 and list(negatives) == ["Bo"]
    assert db_path.read_bytes() == before
    with pytest.raises(FileNotFoundError):
        data.load_from_db(db_path.parent / "nope.db")


def test_load_from_db_skips_photos_the_library_marked_missing(library_db, db):
    lib, db_path = library_db
    db.execute("UPDATE photos SET missing = 1 WHERE id = (SELECT photo_id FROM paths WHERE path = ?)",
               [str(lib / "o1.jpg")])  # fmt: skip
    db.conn.commit()
    assert data.load_from_db(db_path)[1] == {}


@pytest.mark.parametrize("k", [2, 3])
def test_rejected_photos_are_the_preferred_negatives(library_db, k):
    lib, db_path = library_db
    examples, negatives = data.load_from_db(db_path)
    games = data.mine_games(examples, pixel_embedding, k=k, seed=0, extra_negatives=negatives)
    plain = data.mine_games(examples, pixel_embedding, k=k, seed=0)
    rejected = data.Example("", "dog", lib / "o1.jpg")
    assert [g.target for g in games] == examples
    for game, before in zip(games, plain, strict=True):
        assert len(game.candidates) == k and game.candidates[game.answer] == before.candidates[before.answer]
        if game.target.concept == "Bo":
            assert rejected in game.candidates and game.candidates[game.answer] != rejected
            # the rest are the plain game's best negatives, one fewer
            others = set(game.candidates) - {rejected, game.candidates[game.answer]}
            assert len(others) == k - 2 and others <= set(before.candidates)
        else:
            assert game == before  # other concepts' games are untouched
    assert data.mine_games(examples, pixel_embedding, k=k, seed=0, extra_negatives=negatives) == games


def test_extra_negatives_rank_by_similarity_and_skip_known_photos(library_db):
    lib, db_path = library_db
    examples, _ = data.load_from_db(db_path)
    extra = {"Bo": [lib / "o2.jpg", lib / "o1.jpg", lib / "rex0.jpg"], "nobody": [lib / "o2.jpg"]}
    games = data.mine_games(examples, pixel_embedding, k=2, seed=0, extra_negatives=extra)
    for game in games:
        negative = game.candidates[1 - game.answer]
        if game.target.concept == "Bo":
            t = pixel_embedding(game.target.path)
            closest = max(["o2.jpg", "o1.jpg"], key=lambda n: float(pixel_embedding(lib / n) @ t))
            assert negative == data.Example("", "dog", lib / closest)  # rex0.jpg is an example already
        else:
            assert negative.concept not in ("", game.target.concept)


def test_config_takes_one_data_source(tmp_path):
    assert load_config(None, ["db=/x/library.db"]).db == "/x/library.db"
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(db="/x/library.db", data_root="/x/photos")
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(db="/x/library.db", categories="/x/cats.csv")
    with pytest.raises(ConfigError, match="no training data"):
        TrainConfig().check_data_source()
    with pytest.raises(ConfigError, match="categories"):
        TrainConfig(data_root="/x/photos").check_data_source()
    TrainConfig(db="/x/library.db").check_data_source()
    TrainConfig(data_root="/x/photos", categories="/x/cats.csv").check_data_source()


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_one_train_step_from_the_database(library_db, tiny, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from trainer import train as train_module
    from trainer.train import METRIC_KEYS, train

    torch.set_num_threads(1)
    lib, db_path = library_db
    mined = []

    def mine(*args, **kwargs):
        mined.append(data.mine_games(*args, **kwargs))
        return mined[-1]

    monkeypatch.setattr(train_module, "mine_games", mine)
    config = TrainConfig(
        base=str(tiny.hf_dir), db=str(db_path), out_dir=str(tmp_path / "run"), test_fraction=0.0, steps=1,
        K=2, group_size=2, targets_per_step=1, max_new_tokens=8, lora_r=4, lora_alpha=8, lr=0.01,
    )  # fmt: skip
    run_dir = train(config)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1]
    assert set(METRIC_KEYS) <= set(rows[0]) and all(math.isfinite(v) for v in rows[0].values())
    assert json.loads((run_dir / "run.json").read_text())["config"]["db"] == str(db_path)
    bo_games = [g for g in mined[0] if g.target.concept == "Bo"]
    assert bo_games and all(data.Example("", "dog", lib / "o1.jpg") in g.candidates for g in bo_games)
