"""The concept store: concepts, their photos (references, confirmed, hard negatives), descriptions, tags.

The only writer of `concepts`, `concept_photos`, `descriptions` and `tags`. Names are unique without
regard to case and can be written as `<Bo>`. Removing a concept removes its tags and photo links, never
a photo. Confirming a suggested tag makes the photo an extra reference of the concept; rejecting it
makes the photo a hard negative: both are what the trainer reads. A change to what the tagger uses
(references, description, category) bumps the concept's version and queues the library for re-tagging.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import sqlite_utils

from rrg_local.db import utcnow
from rrg_local.jobs import KIND_TAG, Jobs

ROLES = ("reference", "confirmed", "negative")
MAX_REFERENCES = 5


class ConceptError(Exception):
    """A concept operation a person asked for that cannot be done; the message says why."""


@dataclass(frozen=True)
class Concept:
    id: int
    name: str
    category: str
    coarse: str
    detailed: str
    description_source: str
    threshold: float | None
    version: int


@dataclass(frozen=True)
class Tag:
    photo_id: int
    concept_id: int
    concept: str
    status: str
    score: float | None
    stage1: float | None
    reasoning: str | None
    taken_at: str
    path: str | None
    sure: float | None = None  # stage 1's margin when it alone decided (`TagConfig.sure_margin`); else None


def score_text(tag: Tag) -> str:
    """A tag's score as a reviewer reads it: stage 2's, and stage 1's margin where that alone decided.

    >>> score_text(Tag(1, 2, "Bo", "suggested", 0.123, 0.91, None, "2024-05-01", "a.jpg", 0.083))
    '0.12 (stage 1 sure: +0.08 over every other concept)'
    >>> score_text(Tag(1, 2, "Bo", "confirmed", None, None, None, "2024-05-01", "a.jpg"))
    '-'
    """
    score = "-" if tag.score is None else f"{tag.score:.2f}"
    return score if tag.sure is None else f"{score} ({sure_text(tag.sure)})"


def sure_text(margin: float) -> str:
    """Stage 1's margin where it alone decided a tag, as reviewers and answers read it (pure)."""
    return f"stage 1 sure: +{margin:.2f} over every other concept"


def name_key(name: str) -> str:
    """How names are compared: case-insensitive, angle brackets and outer spaces ignored.

    >>> name_key(" <Bo> ")
    'bo'
    """
    return name.strip().strip("<>").strip().casefold()


_VALID = re.compile(r"^[^\s<>][^<>\n]{0,62}$")

# A person's verdict on (photo, concept); keeps the machine's score for calibration.
_VERDICT_SQL = (
    "INSERT INTO tags (photo_id, concept_id, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (photo_id, concept_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at"
)

_COLS = "id, name, category, coarse, detailed, description_source, threshold, version"


class ConceptStore:
    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self.conn = db.conn

    # ---- concepts -------------------------------------------------------------------------------

    def add(self, name: str, category: str) -> Concept:
        name, category = name.strip().strip("<>").strip(), category.strip()
        if not _VALID.match(name):
            raise ConceptError(f"concept name {name!r}: 1-63 characters, no angle brackets or newlines")
        if not category:
            raise ConceptError("a concept needs a category (dog, mug, person, ...)")
        if self.find(name):
            raise ConceptError(f"a concept named {name!r} already exists")
        now = utcnow()
        cur = self.conn.execute(
            "INSERT INTO concepts (name, name_key, category, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            [name, name_key(name), category, now, now],
        )
        self.conn.commit()
        return self.get(cur.lastrowid)

    def get(self, ref: int | str) -> Concept:
        found = self.find(ref)
        if found is None:
            raise ConceptError(f"no concept named {ref!r} (rrg concept list)")
        return found

    def find(self, ref: int | str) -> Concept | None:
        if isinstance(ref, int):
            row = self.conn.execute(f"SELECT {_COLS} FROM concepts WHERE id = ?", [ref]).fetchone()
        else:
            row = self.conn.execute(f"SELECT {_COLS} FROM concepts WHERE name_key = ?", [name_key(ref)]).fetchone()
        return Concept(*row) if row else None

    def all(self) -> list[Concept]:
        return [Concept(*r) for r in self.conn.execute(f"SELECT {_COLS} FROM concepts ORDER BY name_key")]

    def rename(self, concept: Concept, new_name: str) -> Concept:
        new_name = new_name.strip().strip("<>").strip()
        if not _VALID.match(new_name):
            raise ConceptError(f"concept name {new_name!r}: 1-63 characters, no angle brackets or newlines")
        other = self.find(new_name)
        if other and other.id != concept.id:
            raise ConceptError(f"a concept named {new_name!r} already exists")
        self.conn.execute(
            "UPDATE concepts SET name = ?, name_key = ?, updated_at = ? WHERE id = ?",
            [new_name, name_key(new_name), utcnow(), concept.id],
        )
        self.conn.commit()
        return self.get(concept.id)

    def set_category(self, concept: Concept, category: str) -> Concept:
        if not category.strip():
            raise ConceptError("the category cannot be empty")
        self.conn.execute("UPDATE concepts SET category = ? WHERE id = ?", [category.strip(), concept.id])
        return self._changed(concept)

    def set_description(self, concept: Concept, coarse: str, detailed: str, *, source: str = "user") -> Concept:
        self.conn.execute(
            "UPDATE concepts SET coarse = ?, detailed = ?, description_source = ? WHERE id = ?",
            [coarse.strip(), detailed.strip(), source, concept.id],
        )
        return self._changed(concept)

    def set_threshold(self, concept: Concept, threshold: float | None) -> None:
        self.conn.execute(
            "UPDATE concepts SET threshold = ?, updated_at = ? WHERE id = ?", [threshold, utcnow(), concept.id]
        )
        self.conn.commit()

    def remove(self, concept: Concept) -> None:
        """The concept, its photo links, descriptions and tags go; photos stay."""
        self.conn.execute("DELETE FROM concepts WHERE id = ?", [concept.id])
        self.conn.commit()

    def requeue(self, concept: Concept) -> Concept:
        """After a person confirmed photos of `concept` (new positives for stage 1): tag the library again.
        Their own verdicts are kept (`write_tags` never overwrites them)."""
        return self._changed(concept)

    def _changed(self, concept: Concept) -> Concept:
        """What the tagger uses changed: new version, and every photo is looked at again."""
        self.conn.execute(
            "UPDATE concepts SET version = version + 1, updated_at = ? WHERE id = ?", [utcnow(), concept.id]
        )
        ids = [r[0] for r in self.conn.execute("SELECT id FROM photos WHERE missing = 0")]
        Jobs(self.db).enqueue(ids, KIND_TAG, again=True)
        self.conn.commit()
        return self.get(concept.id)

    # ---- photos of a concept --------------------------------------------------------------------

    def add_photos(self, concept: Concept, photo_ids: Iterable[int], role: str = "reference") -> Concept:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        ids = list(dict.fromkeys(photo_ids))
        if role == "reference" and len(self.photos(concept, "reference") | set(ids)) > MAX_REFERENCES:
            raise ConceptError(f"a concept has at most {MAX_REFERENCES} reference photos")
        now = utcnow()
        self.conn.executemany(
            "INSERT INTO concept_photos (concept_id, photo_id, role, added_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (concept_id, photo_id) DO UPDATE SET role = excluded.role, added_at = excluded.added_at",
            [(concept.id, pid, role, now) for pid in ids],
        )
        status = "rejected" if role == "negative" else "confirmed"
        self.conn.executemany(_VERDICT_SQL, [(pid, concept.id, status, now, now) for pid in ids])
        return self._changed(concept)

    def photos(self, concept: Concept, *roles: str) -> set[int]:
        roles = roles or ROLES
        marks = ",".join("?" * len(roles))
        rows = self.conn.execute(
            f"SELECT photo_id FROM concept_photos WHERE concept_id = ? AND role IN ({marks})", [concept.id, *roles]
        )
        return {r[0] for r in rows}

    def positives(self, concept: Concept) -> set[int]:
        return self.photos(concept, "reference", "confirmed")

    # ---- descriptions -----------------------------------------------------------------------------

    def save_candidates(self, concept: Concept, candidates: list[dict], chosen: int) -> None:
        """Store every candidate description with its score and games; mark the chosen one."""
        now = utcnow()
        self.conn.execute("DELETE FROM descriptions WHERE concept_id = ?", [concept.id])
        self.conn.executemany(
            "INSERT INTO descriptions (concept_id, coarse, detailed, source_photo_id, score, games, chosen, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    concept.id,
                    c["coarse"],
                    c["detailed"],
                    c.get("source_photo_id"),
                    c.get("score"),
                    json.dumps(c.get("games", [])),
                    int(i == chosen),
                    now,
                )
                for i, c in enumerate(candidates)
            ],
        )
        self.conn.commit()

    def candidates(self, concept: Concept) -> list[dict]:
        rows = self.conn.execute(
            "SELECT coarse, detailed, source_photo_id, score, games, chosen FROM descriptions WHERE concept_id = ? "
            "ORDER BY id",
            [concept.id],
        ).fetchall()
        return [
            {
                "coarse": r[0],
                "detailed": r[1],
                "source_photo_id": r[2],
                "score": r[3],
                "games": json.loads(r[4] or "[]"),
                "chosen": bool(r[5]),
            }
            for r in rows
        ]

    # ---- tags ---------------------------------------------------------------------------------------

    def write_tags(self, photo_id: int, results: list[dict], *, model: str) -> None:
        """Replace this photo's machine suggestions; a person's confirm or reject is never overwritten."""
        now = utcnow()
        self.conn.execute("DELETE FROM tags WHERE photo_id = ? AND status = 'suggested'", [photo_id])
        self.conn.executemany(
            "INSERT INTO tags (photo_id, concept_id, status, score, stage1, reasoning, model, concept_version, "
            "created_at, updated_at, sure) VALUES (?, ?, 'suggested', ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (photo_id, concept_id) DO NOTHING",
            [
                (photo_id, r["concept_id"], r["score"], r["stage1"], r.get("reasoning"), model, r["version"], now, now)
                + (r.get("sure"),)
                for r in results
            ],
        )

    def tags(
        self,
        concept: Concept | None = None,
        *,
        statuses: tuple[str, ...] = ("suggested", "confirmed"),
        photo_id: int | None = None,
    ) -> list[Tag]:
        where, params = [f"t.status IN ({','.join('?' * len(statuses))})", "p.missing = 0"], list(statuses)
        if concept is not None:
            where.append("t.concept_id = ?")
            params.append(concept.id)
        if photo_id is not None:
            where.append("t.photo_id = ?")
            params.append(photo_id)
        rows = self.conn.execute(
            "SELECT t.photo_id, t.concept_id, c.name, t.status, t.score, t.stage1, t.reasoning, p.taken_at, "
            "(SELECT path FROM paths WHERE photo_id = p.id AND missing = 0 ORDER BY raw LIMIT 1), t.sure "
            "FROM tags t JOIN concepts c ON c.id = t.concept_id JOIN photos p ON p.id = t.photo_id "
            f"WHERE {' AND '.join(where)} ORDER BY p.taken_at, p.id",
            params,
        ).fetchall()
        return [Tag(*r) for r in rows]

    def review(self, photo_id: int, concept: Concept, confirm: bool) -> None:
        """A person's verdict on a photo: confirmed photos become references, rejected ones hard negatives."""
        now = utcnow()
        status, role = ("confirmed", "confirmed") if confirm else ("rejected", "negative")
        self.conn.execute(_VERDICT_SQL, [photo_id, concept.id, status, now, now])
        self.conn.execute(
            "INSERT INTO concept_photos (concept_id, photo_id, role, added_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (concept_id, photo_id) DO UPDATE SET role = excluded.role WHERE role != 'reference'",
            [concept.id, photo_id, role, now],
        )
        self.conn.commit()

    def standing(self, photo_id: int, concept: Concept) -> tuple[str | None, Tag | None]:
        """What is known about this photo and concept: its role in the concept ("reference", "confirmed",
        "negative" or None) and its tag (any status), each None when there is none."""
        row = self.conn.execute(
            "SELECT role FROM concept_photos WHERE concept_id = ? AND photo_id = ?", [concept.id, photo_id]
        ).fetchone()
        tags = self.tags(concept, statuses=("suggested", "confirmed", "rejected"), photo_id=photo_id)
        return (row[0] if row else None), (tags[0] if tags else None)

    def verdicts(self, concept: Concept) -> tuple[list[float], list[float]]:
        """Stage-2 scores of the suggestions a person confirmed and rejected (for calibration)."""
        rows = self.conn.execute(
            "SELECT status, score FROM tags WHERE concept_id = ? AND status IN ('confirmed', 'rejected') "
            "AND score IS NOT NULL",
            [concept.id],
        ).fetchall()
        return [s for st, s in rows if st == "confirmed"], [s for st, s in rows if st == "rejected"]
