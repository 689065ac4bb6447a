"""Two-stage auto-tagging: cheap retrieval for every photo, one listener call only for the candidates.

Stage 1 (`retrieve`, pure): the photo's embedding against each concept's positive photos (references and confirmed);
a concept is a candidate when its best similarity clears the concept's stage-1 threshold, calibrated from its own
references so that they would all pass (recall first). Stage 2, only for photos with candidates: one recognition
call (P(Yes)) for a single candidate, or one identification call among the top-K with a "None" answer (`stage2 =
"recognize"`: P(Yes) for each candidate instead, so that a photo of Bo with grandma gets both tags; `stage2 =
"likelihood"`: each candidate's description scored as a caption of the photo against the concept's own photos,
`likelihood_score`). The best-scoring candidate (with "recognize" or "likelihood", every candidate) becomes a
suggestion, with its reasoning, when its score clears that concept's threshold (`decide`, `decide_all`): calibrated
from the person's confirmations and rejections (`calibrate`), else from the concept's own photos
(`rrg_local.concepts.calibration`), else the default. With `sure_margin`, a photo whose stage-1 similarity to one
concept beats every other concept's by that margin is tagged with it whatever stage 2 says (`stage1_margin`; the
suggestion keeps the margin, `Tag.sure`, so a reviewer sees why): stage 2 then decides only between concepts stage 1
cannot tell apart, and alone when there is one concept. `Tagger.run()` works through the `tag` jobs, so an
interrupted run resumes. VLM calls are counted: with N photos and C concepts, stage 2 costs at most one call per
photo whatever C is in "identify" mode (plus one short reasoning call per suggestion, and a calibration of a few
calls per concept after a concept changed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import sqlite_utils

from rrg_local.concepts.embeddings import EmbeddingStore
from rrg_local.concepts.store import Concept, ConceptStore
from rrg_local.jobs import KIND_TAG, Jobs
from rrg_local.vlm import prompts, tasks
from rrg_local.vlm.protocol import ImageRef, VisionError, VisionModel


@dataclass(frozen=True)
class TagConfig:
    top_k: int = 3
    # "identify": one call per photo among its top-k candidates; "recognize": P(Yes) for each candidate
    # (k calls, the photo cached), for a listener that judges one description better than it compares k;
    # "likelihood": how well the photo explains each candidate's description (`likelihood_score`), for a model
    # whose captions see more than its yes/no answers (the demo model's did, on colour and category).
    stage2: str = "identify"
    stage1_floor: float = 0.0  # never below this, whatever the calibration says
    stage1_default: float = 0.9  # for a concept with one positive photo (nothing to calibrate from)
    stage1_margin: float = 0.05
    # ...and at least this quantile of the concept's similarity to the rest of the library (most photos show
    # none of a person's concepts): bounds how many photos each concept sends to stage 2. 0 disables.
    background_quantile: float = 0.95
    # ...raised so that C concepts together send at most this share of the library to stage 2 (`concept_quantile`):
    # with 20 concepts at 0.95 each, up to 1 - 0.95^20 = 64% of the photos would reach stage 2. 0 disables.
    stage2_budget: float = 0.3
    stage2_default: float = 0.5
    # Each concept's stage-2 threshold from its own photos (`calibration`) until a person's verdicts calibrate it.
    calibrate: bool = True
    reasoning: bool = True
    # A stage-1 hit this far above every other concept (`stage1_margin`) is tagged without stage 2's consent (it
    # is still scored and explained); 0: never. On the demo libraries every confident stage-2 "no" to such a
    # hit was wrong, and stage 2 earned its keep only where stage 1 saw two concepts alike.
    sure_margin: float = 0.0


def tag_config(settings) -> TagConfig:
    """The tagging knobs a person can set in config.toml (`Settings.tag_*`)."""
    return TagConfig(
        top_k=max(1, settings.tag_top_k),
        background_quantile=settings.tag_background_quantile,
        stage2_budget=settings.tag_stage2_budget,
        stage2=settings.tag_stage2,
        sure_margin=settings.tag_sure_margin,
    )


@dataclass(frozen=True)
class Prototype:
    concept: Concept
    vectors: np.ndarray  # positives, one row each
    threshold: float  # stage 1
    positives: frozenset[int]


@dataclass
class TagReport:
    photos: int = 0
    stage1_candidates: int = 0  # photos that went to stage 2
    stage2_calls: int = 0
    reasoning_calls: int = 0
    calibration_calls: int = 0  # stage-2 calls on concepts' own photos (`calibration`), only after a change
    suggestions: int = 0
    sure: int = 0  # suggestions stage 1 was sure of (`sure_margin`), tagged whatever stage 2 said
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def vlm_calls(self) -> int:
        return self.stage2_calls + self.reasoning_calls + self.calibration_calls


LIKELIHOOD_MARGIN = 2.0  # nats: how much worse than its own photos a photo may explain a description at 0.5
MAX_CAPTION_REFERENCES = 8


def likelihood_score(logprob: float, references: Sequence[float], margin: float = LIKELIHOOD_MARGIN) -> float:
    """A caption likelihood on the listener's 0-1 scale (pure): sigmoid(log P(description | photo) - the median
    over the concept's own photos + `margin`). A photo that explains the description as well as the concept's
    own photos do scores sigmoid(margin) (0.88); each nat worse moves it down the sigmoid.

    >>> round(likelihood_score(-20.0, [-19.0, -20.0, -25.0]), 3), round(likelihood_score(-30.0, [-20.0]), 4)
    (0.881, 0.0003)
    """
    if not references:
        raise ValueError("a caption likelihood needs the concept's own photos to compare with")
    x = logprob - float(np.median(references)) + margin
    return float(1.0 / (1.0 + np.exp(-x)))


@dataclass(frozen=True)
class Stage2:
    scores: tuple[float, ...]  # per candidate: P(Yes), or the probability of its label among all + "None"
    prompts: tuple[list, ...]  # per candidate: the prompt that scored it (for the reasoning call)
    labels: tuple[str, ...]  # per candidate: the answer that picks it
    calls: int = 1


def decide(scores: Sequence[float], thresholds: Sequence[float]) -> int | None:
    """The candidate to tag: the best score, if it clears that concept's threshold; else none (pure).

    "None" in an identification call only takes probability away from the candidates: a concept whose
    threshold was calibrated below 0.5 can be tagged even when "None" was the single likeliest answer.

    >>> decide([0.2, 0.5], [0.5, 0.5]), decide([0.3, 0.1], [0.5, 0.5]), decide([0.3, 0.1], [0.25, 0.5])
    (1, None, 0)
    """
    if not scores:
        return None
    best = max(range(len(scores)), key=lambda i: scores[i])
    return best if scores[best] >= thresholds[best] else None


def decide_all(scores: Sequence[float], thresholds: Sequence[float]) -> list[int]:
    """Every candidate whose score clears its own threshold, best first (pure).

    >>> decide_all([0.45, 0.1, 0.4], [0.3, 0.3, 0.3]), decide_all([0.2, 0.1], [0.5, 0.5])
    ([0, 2], [])
    """
    return sorted((i for i in range(len(scores)) if scores[i] >= thresholds[i]), key=lambda i: -scores[i])


def stage1_threshold(vectors: np.ndarray, config: TagConfig) -> float:
    """Low enough that every positive would find the others (leave-one-out), minus a margin (pure).

    >>> v = np.array([[1.0, 0.0], [0.8, 0.6]])
    >>> round(stage1_threshold(v, TagConfig(stage1_margin=0.05)), 2)
    0.75
    """
    if len(vectors) < 2:
        return config.stage1_default
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    loo = sims.max(axis=1).min()
    return float(max(config.stage1_floor, min(config.stage1_default, loo - config.stage1_margin)))


def background_threshold(vectors: np.ndarray, library: np.ndarray, quantile: float) -> float:
    """The `quantile` of the best similarity between library photos and the concept's positives (pure).

    >>> lib = np.eye(4)[[1, 2, 3, 3]]
    >>> background_threshold(np.eye(4)[[0]], lib, 0.5)
    0.0
    """
    if quantile <= 0 or len(vectors) == 0 or len(library) == 0:
        return -1.0
    best = (library @ vectors.T).max(axis=1)
    return float(np.quantile(best, quantile))


def concept_quantile(config: TagConfig, n_concepts: int) -> float:
    """Each concept's background quantile: the configured one, raised so that `n_concepts` concepts together
    send at most `stage2_budget` of the library to stage 2 (each one its share of it) (pure).

    >>> [concept_quantile(TagConfig(background_quantile=0.95, stage2_budget=0.3), c) for c in (1, 6, 20)]
    [0.95, 0.95, 0.985]
    >>> concept_quantile(TagConfig(background_quantile=0.0, stage2_budget=0.0), 20)
    0.0
    """
    if config.stage2_budget <= 0 or n_concepts <= 0:
        return config.background_quantile
    return round(max(config.background_quantile, 1 - config.stage2_budget / n_concepts), 6)


def stage1_margin(vector: np.ndarray, protos: Sequence[Prototype], best: Prototype) -> float:
    """How far `best`'s similarity to the photo is above every other concept's (pure); -inf with no other
    concept (beating nothing is no evidence: with one concept, stage 2 always decides).

    >>> a = Prototype(None, np.array([[1.0, 0.0]]), 0.5, frozenset())
    >>> b = Prototype(None, np.array([[0.6, 0.8], [0.0, 1.0]]), 0.5, frozenset())
    >>> round(stage1_margin(np.array([1.0, 0.0]), [a, b], a), 3), stage1_margin(np.array([1.0, 0.0]), [a], a)
    (0.4, -inf)
    """
    mine = float((best.vectors @ vector).max())
    others = [float((p.vectors @ vector).max()) for p in protos if p is not best and len(p.vectors)]
    return mine - max(others) if others else float("-inf")


def retrieve(vector: np.ndarray, protos: Sequence[Prototype], k: int) -> list[tuple[Prototype, float]]:
    """The top-k concepts whose best similarity clears their own threshold, best first (pure)."""
    hits = []
    for p in protos:
        if len(p.vectors) == 0:
            continue
        best = float((p.vectors @ vector).max())
        if best >= p.threshold:
            hits.append((p, best))
    hits.sort(key=lambda h: -h[1])
    return hits[:k]


def calibrate(
    confirmed: Sequence[float], rejected: Sequence[float], default: float, *, negative_weight: float = 1.0
) -> float:
    """The stage-2 threshold that best separates a person's verdicts (balanced accuracy, the rejected side
    weighted by `negative_weight`), else the default.

    >>> calibrate([0.9, 0.8, 0.7], [0.2, 0.3], 0.5)
    0.5
    >>> calibrate([0.95, 0.9], [0.6, 0.7, 0.8], 0.5)
    0.85
    >>> calibrate([0.9], [0.1], 0.5)  # too few verdicts
    0.5
    """
    if len(confirmed) < 2 or len(rejected) < 2:
        return default
    points = sorted(set(confirmed) | set(rejected))
    cuts = [(a + b) / 2 for a, b in zip(points, points[1:], strict=False)] or [default]

    def balanced(t: float) -> float:
        tp = sum(s >= t for s in confirmed) / len(confirmed)
        tn = sum(s < t for s in rejected) / len(rejected)
        return (tp + negative_weight * tn) / (1 + negative_weight)

    best = max(cuts, key=lambda t: (balanced(t), -abs(t - default)))
    return round(best, 4)


class Tagger:
    def __init__(
        self,
        db: sqlite_utils.Database,
        model: VisionModel,
        embeddings: EmbeddingStore,
        config: TagConfig = TagConfig(),
    ):
        self.db = db
        self.model = model
        self.emb = embeddings
        self.store = ConceptStore(db)
        self.config = config
        self.calibrated: dict[int, float] = {}  # concept id -> stage-2 threshold (`calibration.calibrate_all`)
        self._captions: dict[tuple, list[tuple[ImageRef, float]]] = {}  # "likelihood": own photos' scores

    def prototypes(self) -> list[Prototype]:
        protos = []
        lib_ids, lib = self.emb.all_vectors()
        concepts = self.store.all()
        quantile = concept_quantile(self.config, len(concepts))
        for c in concepts:
            pos = sorted(self.store.positives(c))
            vectors = np.stack([self.emb.get(p) for p in pos]) if pos else np.zeros((0, 0), dtype=np.float32)
            threshold = stage1_threshold(vectors, self.config)
            if len(lib_ids) >= 50:  # enough of a library to say what "background" looks like
                others = np.array([i not in set(pos) for i in lib_ids])
                background = background_threshold(vectors, lib[others], quantile)
                threshold = max(threshold, background)
            protos.append(Prototype(c, vectors, threshold, frozenset(pos)))
        return protos

    def stage2(self, image, concepts: Sequence[Concept]) -> Stage2:
        """The stage-2 call on one photo and each candidate's score: one identification call among them (with
        "None"), or, for a single candidate or with `stage2 = "recognize"`, P(Yes) per candidate (the photo
        stays in the runtime's cache: each further candidate costs its description's tokens). The calibration
        (`rrg_local.concepts.calibration`) makes the same call, so its thresholds are on the same scale."""
        texts = [prompts.ConceptText(c.name, c.category, c.coarse, c.detailed) for c in concepts]
        if self.config.stage2 == "likelihood":
            scores, calls = [], len(texts)
            for concept, text in zip(concepts, texts, strict=True):
                refs, new_calls = self.caption_references(concept, text)
                calls += new_calls
                own = [lp for ref, lp in refs if ref != image] or [lp for _, lp in refs]  # leave this photo out
                scores.append(likelihood_score(tasks.caption_likelihood(self.model, image, text).logprob, own))
            asks = tuple(prompts.recognition(image, t) for t in texts)
            return Stage2(tuple(scores), asks, ("Yes",) * len(texts), calls=calls)
        if len(texts) == 1 or self.config.stage2 == "recognize":
            recs = [tasks.recognize(self.model, image, t, reasoning=False) for t in texts]
            asks = tuple(prompts.recognition(image, t) for t in texts)
            return Stage2(tuple(r.p_yes for r in recs), asks, ("Yes",) * len(texts), calls=len(texts))
        ident = tasks.identify(self.model, image, texts, reasoning=False, caption=False, none_option=True)
        labels = prompts.letters(len(texts))
        ask = prompts.identification(image, texts, none_option=True)
        return Stage2(tuple(ident.probs[x] for x in labels), (ask,) * len(texts), labels)

    def caption_references(
        self, concept: Concept, text: prompts.ConceptText
    ) -> tuple[list[tuple[ImageRef, float]], int]:
        """The concept's description scored as a caption of each of its own photos (up to 8), computed once
        per description and set of photos; returns them and how many model calls that took now."""
        photos = sorted(self.store.positives(concept))[:MAX_CAPTION_REFERENCES]
        key = (concept.id, text.category, text.coarse, text.detailed, tuple(photos))
        if key in self._captions:
            return self._captions[key], 0
        refs = [(ref, tasks.caption_likelihood(self.model, ref, text).logprob) for ref in map(self.emb.image, photos)]
        self._captions[key] = refs
        return refs, len(refs)

    def threshold(self, concept: Concept) -> float:
        """A person's calibration (their verdicts) first, then the concept's own (`calibration`), else the default."""
        if concept.threshold is not None:
            return concept.threshold
        return self.calibrated.get(concept.id, self.config.stage2_default)

    def tag_photo(self, photo_id: int, protos: Sequence[Prototype], report: TagReport) -> list[dict]:
        vector = self.emb.get(photo_id)
        known = {p.concept.id for p in protos if photo_id in p.positives} | {
            r[0]
            for r in self.db.execute(
                "SELECT concept_id FROM tags WHERE photo_id = ? AND status != 'suggested'", [photo_id]
            )
        }
        hits = [(p, s) for p, s in retrieve(vector, protos, self.config.top_k) if p.concept.id not in known]
        if not hits:
            return []
        report.stage1_candidates += 1
        result = self.stage2(self.emb.image(photo_id), [p.concept for p, _ in hits])
        report.stage2_calls += result.calls
        thresholds = [self.threshold(p.concept) for p, _ in hits]
        margin = stage1_margin(vector, protos, hits[0][0]) if self.config.sure_margin > 0 else None
        sure = margin is not None and margin >= self.config.sure_margin
        if self.config.stage2 in ("recognize", "likelihood"):  # each candidate on its own: a photo can show several
            picked = decide_all(result.scores, [0.0] + thresholds[1:] if sure else thresholds)
        else:  # one answer among them: the best (on the demo library, also tagging runners-up cut precision)
            picked = [0] if sure else [i for i in [decide(result.scores, thresholds)] if i is not None]
        report.sure += int(sure)
        tags = []
        for i in picked:
            (proto, sim), score = hits[i], result.scores[i]
            reasoning = None
            if self.config.reasoning:
                report.reasoning_calls += 1
                reasoning = tasks.explain(self.model, result.prompts[i], result.labels[i])
            report.suggestions += 1
            tags.append(
                {
                    "concept_id": proto.concept.id,
                    "score": float(score),
                    "stage1": sim,
                    "reasoning": reasoning,
                    "version": proto.concept.version,
                    "sure": margin if sure and i == 0 else None,
                }
            )
        return tags

    def run(
        self, *, batch: int = 16, limit: int | None = None, on_progress: Callable[[TagReport, int], None] | None = None
    ) -> TagReport:
        """Work through pending `tag` jobs; each photo's result is committed as soon as it is known."""
        jobs = Jobs(self.db)
        jobs.recover(KIND_TAG)
        report = TagReport()
        protos = self.prototypes()
        remaining = self.db.execute(
            "SELECT count(*) FROM jobs WHERE kind = ? AND state = 'pending'", [KIND_TAG]
        ).fetchone()[0]
        if remaining and protos and self.config.calibrate:
            from rrg_local.concepts.calibration import calibrate_all

            self.calibrated = calibrate_all(self, protos, report)
        while (limit is None or report.photos < limit) and (claimed := jobs.claim(KIND_TAG, batch)):
            for job in claimed:
                if limit is not None and report.photos >= limit:
                    jobs.recover(KIND_TAG)  # put back what this run will not do
                    break
                try:
                    results = self.tag_photo(job.photo_id, protos, report) if protos else []
                except (VisionError, OSError, KeyError) as exc:
                    report.failed += 1
                    report.errors.append(f"photo {job.photo_id}: {exc}")
                    jobs.fail(job, str(exc))
                    continue
                self.store.write_tags(job.photo_id, results, model=self.model.info.name)
                jobs.finish([job.id])  # commits the tags and the job together
                report.photos += 1
                if on_progress:
                    on_progress(report, remaining)
        return report
