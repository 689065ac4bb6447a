"""Writing a concept's description: the speaker proposes, the reference game chooses.

Beyond the paper at inference time: `write_description()` samples several candidate descriptions from
the concept's reference photos, then plays the RRG reference game with each. For every other reference
photo (the target) it asks the listener P(Yes | photo, description) for the target and for hard
negatives (the most similar photos known *not* to be this concept: other concepts' photos, same category
first, and photos the user rejected), and scores the candidate by the mean contrastive reward. The best
one becomes the concept's description; all candidates are stored with their games, so the choice can
be explained. One reference photo: no game can be played, the greedy description is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rrg_local.concepts.embeddings import EmbeddingStore, similarities
from rrg_local.concepts.reward import contrastive_reward
from rrg_local.concepts.store import Concept, ConceptStore
from rrg_local.vlm import tasks
from rrg_local.vlm.prompts import ConceptText
from rrg_local.vlm.protocol import VisionModel


@dataclass(frozen=True)
class DescribeConfig:
    samples_per_photo: int = 2  # 1 greedy + (n - 1) sampled at `temperature`
    temperature: float = 0.8
    negatives: int = 2  # K - 1: the paper's games have K = 3 candidates
    seed: int = 0


def hard_negatives(store: ConceptStore, emb: EmbeddingStore, concept: Concept, target: int, k: int) -> list[int]:
    """The k photos most similar to `target` among those known not to be `concept`, same category first."""
    own = store.photos(concept)
    same, other = [], []
    for c in store.all():
        if c.id == concept.id:
            continue
        (same if c.category.casefold() == concept.category.casefold() else other).extend(
            sorted(store.positives(c) - own)
        )
    rejected = sorted(store.photos(concept, "negative"))
    tv = emb.get(target)
    ranked: list[int] = []
    for pool in (same + rejected, other):
        pool = [p for p in dict.fromkeys(pool) if p not in ranked]
        if pool:
            sims = similarities(tv, np.stack([emb.get(p) for p in pool]))
            ranked += [pool[i] for i in np.argsort(-sims, kind="stable")]
    return ranked[:k]


def write_description(
    model: VisionModel,
    store: ConceptStore,
    emb: EmbeddingStore,
    concept: Concept,
    config: DescribeConfig = DescribeConfig(),
) -> Concept:
    refs = sorted(store.positives(concept))
    if not refs:
        raise ValueError(f"concept {concept.name!r} has no reference photos")
    candidates: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for i, pid in enumerate(refs):
        for s in range(config.samples_per_photo if len(refs) > 1 else 1):
            d = tasks.describe(
                model,
                emb.image(pid),
                concept.category,
                temperature=0.0 if s == 0 else config.temperature,
                seed=config.seed + 97 * i + s,
            )
            if (d.coarse, d.detailed) not in seen:
                seen.add((d.coarse, d.detailed))
                candidates.append({"coarse": d.coarse, "detailed": d.detailed, "source_photo_id": pid})
    chosen = 0
    if len(refs) > 1:
        games = {t: [t, *hard_negatives(store, emb, concept, t, config.negatives)] for t in refs}
        texts = [ConceptText(concept.name, concept.category, c["coarse"], c["detailed"]) for c in candidates]
        photos = sorted({p for pool in games.values() for p in pool})
        # Photo-major order: the runtime keeps each photo in its KV cache while the descriptions change.
        p_yes = {
            (p, j): tasks.recognize(model, emb.image(p), t, reasoning=False).p_yes
            for p in photos
            for j, t in enumerate(texts)
        }
        for j, cand in enumerate(candidates):
            played = []
            for target, pool in games.items():
                if target == cand["source_photo_id"]:
                    continue  # a description is judged on the photos it was not written from
                probs = [p_yes[(p, j)] for p in pool]
                played.append(
                    {
                        "target": target,
                        "pool": pool,
                        "probs": [round(x, 4) for x in probs],
                        "reward": contrastive_reward(probs, 0),
                    }
                )
            cand["games"] = played
            cand["score"] = float(np.mean([g["reward"] for g in played])) if played else None
        chosen = max(range(len(candidates)), key=lambda j: (candidates[j]["score"] or 0.0, -j))
    store.save_candidates(concept, candidates, chosen)
    best = candidates[chosen]
    return store.set_description(concept, best["coarse"], best["detailed"], source="speaker")
