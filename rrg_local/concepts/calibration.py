"""Each concept's own stage-2 threshold, learned from its photos before a person has judged any suggestion.

A listener's scores are not on one scale across concepts and models: the demo model's P(Yes) on a concept's
own unseen photos sat at 0.3-0.45, under the 0.5 default, so nothing was tagged at all. `calibrate_all()`
makes, for each concept, the stage-2 call the tagger would make (`Tagger.stage2`, on the candidates stage 1
would give that photo) on the concept's positive photos and on photos known not to show it that stage 2
could see with it (the photos a person rejected, and other concepts' positives that stage 1 would send with
it, as if unlabelled, most similar first), and keeps the cut that best separates the two (`tagging.calibrate`,
negatives weighted double: most photos of a library show none of a person's concepts). With too few
negatives (a first concept, or a sharp embedder) the cut sits just under its weakest positive (recall first,
as in stage 1). Never above the default. Results are stored in `calibrations` under a key of everything the
scores depend on (the model, every concept's version and description, the photos used), so a tag run pays
for calibration only after a change. A person's verdicts (`rrg review`, stored as `concepts.threshold`) take
precedence.

`recognition_threshold()` is the same cut on the listener's P(Yes) scale, for "Is Bo in this photo?", read from
the reference games that chose the concept's description (no model call).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rrg_local.concepts.store import Concept, ConceptStore
from rrg_local.concepts.tagging import Prototype, Tagger, TagReport, calibrate
from rrg_local.db import utcnow

MAX_POSITIVES = 8
MAX_NEGATIVES = 8
MARGIN = 0.05
NEGATIVE_WEIGHT = 2.0


@dataclass(frozen=True)
class Calibration:
    concept_id: int
    threshold: float
    positives: list[tuple[int, float]]
    negatives: list[tuple[int, float]]


def own_threshold(positives: Sequence[float], negatives: Sequence[float], default: float) -> float:
    """The stage-2 cut for one concept from its scores (pure).

    >>> own_threshold([0.40, 0.35, 0.42], [0.05, 0.1, 0.2], 0.5)  # separable: between them
    0.275
    >>> own_threshold([0.40, 0.35, 0.42], [0.05, 0.1, 0.2, 0.38], 0.5)  # a positive lost, not 1/4 of negatives
    0.39
    >>> own_threshold([0.40, 0.35], [], 0.5)  # no negatives yet: just under the weakest positive
    0.3
    >>> own_threshold([0.9, 0.8], [0.1], 0.5)  # a confident listener keeps the default
    0.5
    """
    if not positives:
        return default
    if len(negatives) >= 2 and len(positives) >= 2:
        return min(default, calibrate(positives, negatives, default, negative_weight=NEGATIVE_WEIGHT))
    return round(min(default, max(0.0, min(positives) - MARGIN)), 4)


def ranked_unlabelled(vector: np.ndarray, photo_id: int, protos: Sequence[Prototype]) -> list[tuple[float, Prototype]]:
    """Each concept's best similarity to the photo, the photo left out of its own concept's positives (as if it
    were unlabelled), best first; concepts with nothing left to compare are skipped (pure)."""
    ranked = []
    for p in protos:
        keep = [i for i, pid in enumerate(sorted(p.positives)) if pid != photo_id]
        if keep and len(p.vectors):
            ranked.append((float((p.vectors[keep] @ vector).max()), p))
    ranked.sort(key=lambda r: -r[0])
    return ranked


def candidates_for(
    vector: np.ndarray, photo_id: int, concept_id: int, protos: Sequence[Prototype], k: int
) -> list[Prototype]:
    """The candidates stage 1 would send with this photo, as if it were unlabelled, with `concept_id` among
    them (replacing the last when it would not make the top k); best first (pure)."""
    ranked = ranked_unlabelled(vector, photo_id, protos)
    top = [p for _, p in ranked[:k]]
    if all(p.concept.id != concept_id for p in top):
        own = next((r for r in ranked if r[1].concept.id == concept_id), None)
        if own is None:
            own = (1.0, next(p for p in protos if p.concept.id == concept_id))
        top = sorted([*[r for r in ranked[: k - 1]], own], key=lambda r: -r[0])
        top = [p for _, p in top]
    return top


def sent_with(vector: np.ndarray, photo_id: int, concept_id: int, protos: Sequence[Prototype], k: int) -> bool:
    """Whether stage 1 would send this photo to stage 2 with `concept_id` among its candidates, the photo taken
    as unlabelled (left out of its own concept's positives): the concept clears its stage-1 threshold and is
    among the top k that do (pure)."""
    hits = [p for best, p in ranked_unlabelled(vector, photo_id, protos) if best >= p.threshold]
    return concept_id in [p.concept.id for p in hits[:k]]


def _negatives(tagger: Tagger, proto: Prototype, protos: Sequence[Prototype]) -> list[int]:
    """Photos known not to show the concept that stage 2 could see with it: the ones a person rejected, then
    other concepts' positives that stage 1 would send with it (`sent_with`), most similar first. A photo that
    stage 1 sends elsewhere never meets this concept in stage 2, so it must not push the cut up (with a sharp
    embedder, a look-alike the listener cannot tell apart raised a cut above the concept's own photos)."""
    rejected = sorted(tagger.store.photos(proto.concept, "negative") - proto.positives)
    others = sorted({pid for p in protos if p is not proto for pid in p.positives} - proto.positives - set(rejected))
    k, cid = tagger.config.top_k, proto.concept.id
    others = [pid for pid in others if sent_with(tagger.emb.get(pid), pid, cid, protos, k)]
    if others and len(proto.vectors):
        sims = [float((proto.vectors @ tagger.emb.get(pid)).max()) for pid in others]
        others = [others[i] for i in np.argsort(-np.array(sims), kind="stable")]
    return (rejected + others)[:MAX_NEGATIVES]


def calibration_key(tagger: Tagger, protos: Sequence[Prototype], positives: list[int], negatives: list[int]) -> str:
    state = {
        "model": tagger.model.info.name,
        "top_k": tagger.config.top_k,
        "default": tagger.config.stage2_default,
        "concepts": [(p.concept.id, p.concept.version, p.concept.coarse, p.concept.detailed) for p in protos],
        "positives": positives,
        "negatives": negatives,
    }
    return hashlib.sha1(json.dumps(state, sort_keys=True).encode()).hexdigest()


def stored(db, concept_id: int) -> tuple[str, Calibration] | None:
    """The stored calibration of a concept and its key, if any."""
    row = db.execute(
        "SELECT key, threshold, positives, negatives FROM calibrations WHERE concept_id = ?", [concept_id]
    ).fetchone()
    if row is None:
        return None
    pos, neg = ([tuple(x) for x in json.loads(v)] for v in (row[2], row[3]))
    return row[0], Calibration(concept_id, row[1], pos, neg)


def current(db, concept_id: int) -> Calibration | None:
    """The concept's stored calibration (whatever its key), for showing it."""
    found = stored(db, concept_id)
    return found[1] if found else None


def explain(concept: Concept, own: Calibration | None, default: float) -> str:
    """Which stage-2 threshold the tagger uses for `concept`, and where it comes from (pure).

    >>> c = Concept(1, "Bo", "dog", "", "", "none", None, 1)
    >>> explain(c, Calibration(1, 0.31, [(1, 0.4)] * 3, [(2, 0.1)] * 8), 0.5)
    '0.31 (its own: 3 of its photos vs 8 known not to show it)'
    >>> explain(c, None, 0.5)
    '0.50 (the default, until the next tag run calibrates it)'
    """
    if concept.threshold is not None:
        return f"{concept.threshold:.2f} (from your confirmations and rejections)"
    if own is not None:
        n_pos, n_neg = len(own.positives), len(own.negatives)
        return f"{own.threshold:.2f} (its own: {n_pos} of its photos vs {n_neg} known not to show it)"
    return f"{default:.2f} (the default, until the next tag run calibrates it)"


def calibrate_one(tagger: Tagger, proto: Prototype, protos: Sequence[Prototype], report: TagReport) -> Calibration:
    """Score the concept's positives and negatives with the tagger's own stage-2 call (cached by key)."""
    positives = sorted(proto.positives)[:MAX_POSITIVES]
    negatives = _negatives(tagger, proto, protos)
    key = calibration_key(tagger, protos, positives, negatives)
    cached = stored(tagger.db, proto.concept.id)
    if cached and cached[0] == key:
        return cached[1]

    def score(photo_id: int) -> float:
        cands = candidates_for(tagger.emb.get(photo_id), photo_id, proto.concept.id, protos, tagger.config.top_k)
        result = tagger.stage2(tagger.emb.image(photo_id), [p.concept for p in cands])
        report.calibration_calls += result.calls
        return round(float(result.scores[[p.concept.id for p in cands].index(proto.concept.id)]), 4)

    pos = [(pid, score(pid)) for pid in positives]
    neg = [(pid, score(pid)) for pid in negatives]
    threshold = own_threshold([s for _, s in pos], [s for _, s in neg], tagger.config.stage2_default)
    tagger.db.execute(
        "INSERT INTO calibrations (concept_id, key, threshold, positives, negatives, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (concept_id) DO UPDATE SET key = excluded.key, "
        "threshold = excluded.threshold, positives = excluded.positives, negatives = excluded.negatives, "
        "created_at = excluded.created_at",
        [proto.concept.id, key, threshold, json.dumps(pos), json.dumps(neg), utcnow()],
    )
    tagger.db.conn.commit()
    return Calibration(proto.concept.id, threshold, pos, neg)


def calibrate_all(tagger: Tagger, protos: Sequence[Prototype], report: TagReport) -> dict[int, float]:
    """Concept id -> its own stage-2 threshold, for every concept with positive photos."""
    return {p.concept.id: calibrate_one(tagger, p, protos, report).threshold for p in protos if p.positives}


def recognition_threshold(store: ConceptStore, concept: Concept, default: float = 0.5) -> float:
    """The concept's cut on the listener's P(Yes) (`own_threshold`): P(Yes) on its reference photos against the
    hard negatives of the reference games that chose its description (`describe.write_description`). The
    default when no games chose the current description (one reference photo, or written by a person)."""
    chosen = next((c for c in store.candidates(concept) if c["chosen"]), None)
    if chosen is None or not chosen["games"]:
        return default
    if (chosen["coarse"], chosen["detailed"]) != (concept.coarse, concept.detailed):
        return default
    positives = [g["probs"][0] for g in chosen["games"]]
    negatives = [p for g in chosen["games"] for p in g["probs"][1:]]
    return own_threshold(positives, negatives, default)
