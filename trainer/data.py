"""Training data for RRG self-play: benchmark examples, a seeded split by concept, and hard-example games.

The trainer loop calls `load_examples` (a benchmark laid out as `ROOT/<concept>/<image>` plus a categories
map), `split_by_concept`, then `mine_games` with an embedding function (path -> L2-normalised vector, e.g. a
CLIP image encoder) to build one game per target image. `EmbeddingCache` keeps embeddings keyed by path and
mtime so re-runs embed only new or changed files; it is the only part that touches disk besides the loader.

A game follows the RRG paper: the speaker describes the target image; the listener sees K candidates, the
hard positive (the least similar other photo of the target's concept; the target itself when the concept has
one photo) and K-1 hard negatives (the most similar photo from each of the most similar other concepts, same
category first, then other categories when the category runs out). Known look-alikes of a concept (the demo
world's look-alike groups, one attribute apart: `lookalikes`) go before the rest of its category.

The second source is the user's own rrg-local library: `load_from_db` reads each concept's reference and
confirmed photos as examples and its rejected photos as extra hard negatives, which `mine_games` takes as
`extra_negatives` and prefers over other concepts' photos (a person said they are not the concept).
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

Embed = Callable[[Path], np.ndarray]


@dataclass(frozen=True)
class Example:
    """One benchmark photo of a concept."""

    concept: str
    category: str
    path: Path


@dataclass(frozen=True)
class Game:
    """One reference game: the speaker sees `target`; the listener must pick `candidates[answer]`."""

    target: Example
    candidates: tuple[Example, ...]
    answer: int


def load_categories(path: Path) -> dict[str, str]:
    """`{concept: category}` from a JSON object or a CSV with `concept,category` columns (header optional)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object {{concept: category}}")
        return {str(k): str(v) for k, v in data.items()}
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(cell.strip() for cell in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["concept", "category"]:
        rows = rows[1:]
    if any(len(r) < 2 for r in rows):
        raise ValueError(f"{path}: every row needs concept,category")
    return {r[0].strip(): r[1].strip() for r in rows}


def load_examples(root: Path, categories: dict[str, str] | Path) -> list[Example]:
    """Every image under `root/<concept>/`, sorted; raises when a concept folder has no category."""
    root = Path(root)
    cats = categories if isinstance(categories, dict) else load_categories(categories)
    concepts = sorted(d for d in root.iterdir() if d.is_dir())
    missing = [d.name for d in concepts if d.name not in cats]
    if missing:
        raise ValueError(f"no category for concept(s): {', '.join(missing)}")
    return [
        Example(d.name, cats[d.name], f)
        for d in concepts
        for f in sorted(d.iterdir())
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    ]


def _first_existing(conn, photo_id: int) -> Path | None:
    """The photo's first path (in raw byte order) that the library has not marked missing and that exists."""
    rows = conn.execute("SELECT raw FROM paths WHERE photo_id = ? AND missing = 0 ORDER BY raw", [photo_id])
    for (raw,) in rows.fetchall():
        path = Path(os.fsdecode(bytes(raw)))
        if path.is_file():
            return path
    return None


def load_from_db(db_path: Path | str) -> tuple[list[Example], dict[str, list[Path]]]:
    """(examples, negatives) from an rrg-local `library.db`, opened read-only.

    Examples: every concept's reference and confirmed photos, concepts by name (case-insensitive), photos
    by id. Negatives: `{concept: [path, ...]}` of the photos a person rejected for it (only concepts that
    have some). A photo counts at its first existing path; a photo whose file is gone is skipped.
    """
    from rrg_local.db import connect

    db_path = Path(db_path)
    if not db_path.is_file():
        raise FileNotFoundError(f"no rrg-local database at {db_path}")
    conn = connect(db_path, readonly=True)
    try:
        rows = conn.execute(
            "SELECT c.name, c.category, cp.role, cp.photo_id FROM concept_photos cp "
            "JOIN concepts c ON c.id = cp.concept_id JOIN photos p ON p.id = cp.photo_id "
            "WHERE p.missing = 0 ORDER BY c.name_key, cp.photo_id"
        ).fetchall()
        examples: list[Example] = []
        negatives: dict[str, list[Path]] = {}
        for name, category, role, photo_id in rows:
            path = _first_existing(conn, photo_id)
            if path is None:
                continue
            if role == "negative":
                negatives.setdefault(name, []).append(path)
            elif role in ("reference", "confirmed"):
                examples.append(Example(name, category, path))
        return examples, negatives
    finally:
        conn.close()


def split_by_concept(
    examples: Sequence[Example], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """(train, test) with every concept's photos on one side; the same seed gives the same split."""
    concepts = sorted({e.concept for e in examples})
    random.Random(seed).shuffle(concepts)
    test = set(concepts[: round(len(concepts) * test_fraction)])
    return [e for e in examples if e.concept not in test], [e for e in examples if e.concept in test]


class EmbeddingCache:
    """Embeddings keyed by (path, mtime_ns), kept in memory and optionally saved to / loaded from an npz file."""

    def __init__(self, file: Path | None = None) -> None:
        self.file = Path(file) if file else None
        self.vectors: dict[str, np.ndarray] = {}
        if self.file and self.file.exists():
            with np.load(self.file, allow_pickle=False) as data:
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @staticmethod
    def key(path: Path) -> str:
        return f"{Path(path).resolve()}@{Path(path).stat().st_mtime_ns}"

    def embed(self, paths: Iterable[Path], fn: Embed) -> np.ndarray:
        """(N, D) embeddings of `paths`, calling `fn` only for paths not cached at their current mtime."""
        rows = []
        for path in paths:
            key = self.key(path)
            if key not in self.vectors:
                self.vectors[key] = np.asarray(fn(Path(path)), dtype=np.float32)
            rows.append(self.vectors[key])
        return np.stack(rows)

    def save(self) -> None:
        if self.file is None:
            raise ValueError("this cache has no file")
        keys = sorted(self.vectors)
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with self.file.open("wb") as fh:
            np.savez(fh, keys=np.array(keys, dtype=str), vectors=np.stack([self.vectors[k] for k in keys]))


def load_lookalikes(path: Path) -> dict[str, list[str]]:
    """`{concept: [look-alike concept, ...]}` from a JSON object of that shape (`mine_games`' `lookalikes`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read look-alikes from {path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in data.values()
    ):
        raise ValueError(f"{path}: look-alikes must be a JSON object of concept -> list of concept names")
    return {str(k): list(v) for k, v in data.items()}


def mine_games(
    examples: Sequence[Example],
    embed: Embed,
    k: int = 3,
    seed: int = 0,
    cache: EmbeddingCache | None = None,
    extra_negatives: Mapping[str, Sequence[Path]] | None = None,
    lookalikes: Mapping[str, Collection[str]] | None = None,
) -> list[Game]:
    """One game per example (in order); candidates are shuffled with `seed`. Needs k-1 other concepts.

    `lookalikes` (`{concept: [concept, ...]}`, e.g. the demo world's look-alike groups, `load_lookalikes`) are
    the concepts a target's negatives come from first, before the rest of its category: known confusions.

    `extra_negatives` (`{concept: [path, ...]}`, e.g. the photos a person rejected for the concept) are
    candidates for the negatives of that concept's games, as `Example("", target category, path)` (they show
    no known concept). They rank before the other concepts' photos, the most similar first: a rejected photo
    is a hard negative by definition. A path already among the examples is not added again.
    """
    if k < 2:
        raise ValueError("a game needs k >= 2 candidates")
    if len({e.concept for e in examples}) < k:
        raise ValueError(f"{k} candidates need at least {k} concepts")
    cache = cache or EmbeddingCache()
    vectors = cache.embed([e.path for e in examples], embed)
    sims = vectors @ vectors.T
    concepts = np.array([e.concept for e in examples])
    known = {Path(e.path) for e in examples}
    extras: dict[str, tuple[list[Path], np.ndarray]] = {}
    for concept, paths in sorted((extra_negatives or {}).items()):
        fresh = list(dict.fromkeys(Path(p) for p in paths if Path(p) not in known))
        if fresh and concept in set(concepts.tolist()):
            extras[concept] = (fresh, cache.embed(fresh, embed))
    rng = random.Random(seed)
    games = []
    for i, target in enumerate(examples):
        same = np.flatnonzero((concepts == target.concept) & (np.arange(len(examples)) != i))
        positive = int(same[np.argmin(sims[i, same])]) if len(same) else i
        # The closest photo of each other concept; concepts ranked by that photo, same category first.
        best: dict[str, int] = {}
        for j in np.flatnonzero(concepts != target.concept):
            c = examples[j].concept
            if c not in best or sims[i, j] > sims[i, best[c]]:
                best[c] = int(j)
        first = (lookalikes or {}).get(target.concept, ())
        ranked = sorted(
            best.values(),
            key=lambda j: (examples[j].concept not in first, examples[j].category != target.category, -sims[i, j], j),
        )
        negatives = [examples[j] for j in ranked]
        if target.concept in extras:
            paths, extra_vectors = extras[target.concept]
            extra_sims = extra_vectors @ vectors[i]
            order = sorted(range(len(paths)), key=lambda j: (-extra_sims[j], j))
            negatives = [Example("", target.category, paths[j]) for j in order] + negatives
        candidates = [examples[positive]] + negatives[: k - 1]
        order = list(range(k))
        rng.shuffle(order)
        games.append(Game(target, tuple(candidates[o] for o in order), order.index(0)))
    return games
