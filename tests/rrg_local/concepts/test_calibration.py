"""Each concept's own stage-2 threshold: pure candidate sets and cuts, then end to end on the tiny llama.cpp model."""

import json

import numpy as np
import pytest

from rrg_local.concepts.calibration import candidates_for, own_threshold, sent_with
from rrg_local.concepts.store import Concept
from rrg_local.concepts.tagging import Prototype, TagConfig, Tagger, decide
from rrg_local.jobs import KIND_TAG, Jobs


def proto(cid, photos, vectors):
    c = Concept(cid, f"c{cid}", "dog", "", "", "none", None, 1)
    return Prototype(c, np.array(vectors, dtype=np.float32), 0.0, frozenset(photos))


def test_candidates_leave_the_photo_out_and_always_hold_the_concept():
    a = proto(1, [10, 11], [[1, 0, 0], [0.6, 0.8, 0]])
    b = proto(2, [20], [[0.9, 0.436, 0]])
    c = proto(3, [30], [[0, 0, 1]])
    # Photo 10 is a's own: against itself it would score 1.0; left out, a scores 0.6 < b's 0.9.
    got = candidates_for(np.array([1.0, 0, 0]), 10, 1, [a, b, c], k=2)
    assert [p.concept.id for p in got] == [2, 1]
    # c would not make the top 2: it replaces the last one, the order stays by similarity.
    got = candidates_for(np.array([1.0, 0, 0]), 99, 3, [a, b, c], k=2)
    assert [p.concept.id for p in got] == [1, 3]
    # A concept whose only positive is the photo itself is still a candidate.
    got = candidates_for(np.array([0, 0, 1.0]), 30, 3, [a, b, c], k=1)
    assert [p.concept.id for p in got] == [3]


def test_sent_with_is_stage_1_for_the_photo_as_if_unlabelled():
    a = proto(1, [10, 11], [[1, 0, 0], [0.6, 0.8, 0]])
    b = proto(2, [20], [[0.9, 0.436, 0]])
    a, b = (Prototype(p.concept, p.vectors, 0.5, p.positives) for p in (a, b))
    photo = np.array([1.0, 0, 0])
    # Photo 20 is b's only positive: left out, b has nothing to match; a clears its threshold.
    assert sent_with(photo, 20, 1, [a, b], k=1) and not sent_with(photo, 20, 2, [a, b], k=2)
    # Photo 10 left out of a: a scores 0.6, b 0.9; with k = 1 only b is sent, with k = 2 both.
    assert not sent_with(photo, 10, 1, [a, b], k=1) and sent_with(photo, 10, 1, [a, b], k=2)
    # Below a concept's stage-1 threshold, never.
    high = Prototype(a.concept, a.vectors, 0.95, a.positives)
    assert not sent_with(photo, 10, 1, [high, b], k=2)


def test_own_threshold_and_decide_work_on_values():
    assert own_threshold([0.4, 0.42], [0.1, 0.12, 0.41], 0.5) == pytest.approx(0.415)  # precision first
    assert own_threshold([], [0.1], 0.5) == 0.5
    assert own_threshold([0.04], [], 0.5) == 0.0  # never below zero
    assert decide([0.3, 0.2], [0.35, 0.1]) is None  # the best score decides, against its own threshold
    assert decide([], []) is None


def run_all(db, tagger):
    ids = [r[0] for r in db.execute("SELECT id FROM photos WHERE missing = 0")]
    Jobs(db).enqueue(ids, KIND_TAG, again=True)
    db.conn.commit()
    return tagger.run()


def bo_and_mug(store, emb, indexed):
    """Bo (3 photos, one other photo rejected) and Mug (2 photos), embedded."""
    bo = store.add_photos(store.add("Bo", "dog"), [indexed(f"refs/bo{i}.jpg") for i in range(3)])
    mug = store.add_photos(store.add("Mug", "mug"), [indexed("refs/mug0.jpg"), indexed("refs/mug1.jpg")])
    rejected = indexed("others/o1.jpg")
    store.review(rejected, bo, False)
    emb.run_jobs()
    return bo, mug, rejected


def test_tagging_calibrates_each_concept_once_and_after_a_change(db, indexed, stores, model):
    store, emb = stores
    bo, mug, rejected = bo_and_mug(store, emb, indexed)
    tagger = Tagger(db, model, emb, TagConfig(top_k=2))
    report = tagger.run()
    rows = {r[0]: r for r in db.execute("SELECT concept_id, threshold, positives, negatives FROM calibrations")}
    assert set(rows) == {bo.id, mug.id}
    bo_pos, bo_neg = (json.loads(x) for x in rows[bo.id][2:])
    assert [p for p, _ in bo_pos] == sorted(store.positives(bo))
    # Bo's negatives: the photo a person rejected first, then Mug's photos; never Bo's own.
    assert bo_neg[0][0] == rejected and {p for p, _ in bo_neg[1:]} == store.positives(mug)
    mug_neg = {p for p, _ in json.loads(rows[mug.id][3])}
    assert mug_neg == store.positives(bo)  # Bo's rejected photo is not known to be anything for Mug
    assert report.calibration_calls == (3 + 3) + (2 + 3)
    for cid, threshold, pos, neg in rows.values():
        pos_s, neg_s = [s for _, s in json.loads(pos)], [s for _, s in json.loads(neg)]
        assert threshold == own_threshold(pos_s, neg_s, 0.5) and tagger.threshold(store.get(cid)) == threshold
    # A stored score is the tagger's own stage-2 call on that photo (same candidates, same scale).
    pid, score = bo_pos[0]
    direct = tagger.stage2(emb.image(pid), [store.get("Mug"), store.get("Bo")])
    alt = tagger.stage2(emb.image(pid), [store.get("Bo"), store.get("Mug")])
    assert score in (pytest.approx(direct.scores[1], abs=1e-3), pytest.approx(alt.scores[0], abs=1e-3))
    # Every suggestion cleared its concept's own threshold.
    for t in store.tags(statuses=("suggested",)):
        assert t.score >= tagger.threshold(store.get(t.concept_id))

    again = run_all(db, Tagger(db, model, emb, TagConfig(top_k=2)))
    assert again.calibration_calls == 0 and again.photos > 0  # nothing changed: the stored thresholds hold

    store.set_description(store.get("Bo"), "A photo of a dog", "The dog has one white ear.")
    changed = Tagger(db, model, emb, TagConfig(top_k=2))
    assert changed.run().calibration_calls == 11  # a description changed: every concept is scored again

    store.set_threshold(store.get("Mug"), 0.77)  # a person's verdicts win over the concept's own
    assert changed.threshold(store.get("Mug")) == 0.77


def test_calibration_negatives_are_only_photos_stage_1_would_send(db, indexed, stores, model):
    store, emb = stores
    bo, mug, rejected = bo_and_mug(store, emb, indexed)
    # Stage-1 thresholds above every similarity between the two concepts' photos: neither ever sends the
    # other's photos to stage 2, so they are not negatives; a person's rejection still is.
    protos = Tagger(db, model, emb, TagConfig(top_k=2)).prototypes()
    cross = max(
        float((p.vectors @ emb.get(q)).max()) for p in protos for o in protos if o is not p for q in o.positives
    )
    report = Tagger(db, model, emb, TagConfig(top_k=2, stage1_floor=cross + 1e-3, background_quantile=0.0)).run()
    negatives = {
        r[0]: [p for p, _ in json.loads(r[1])] for r in db.execute("SELECT concept_id, negatives FROM calibrations")
    }
    assert negatives == {bo.id: [rejected], mug.id: []}
    assert report.calibration_calls == (3 + 1) + 2
    threshold = db.execute("SELECT threshold FROM calibrations WHERE concept_id = ?", [mug.id]).fetchone()[0]
    scores = [
        s
        for _, s in json.loads(
            db.execute("SELECT positives FROM calibrations WHERE concept_id = ?", [mug.id]).fetchone()[0]
        )
    ]
    assert threshold == own_threshold(scores, [], 0.5)  # no negatives: just under its weakest photo


def test_recognize_mode_scores_every_candidate_with_p_yes(db, indexed, stores, model):
    from rrg_local.vlm import prompts, tasks

    store, emb = stores
    store.add_photos(store.add("Bo", "dog"), [indexed(f"refs/bo{i}.jpg") for i in range(3)])
    store.add_photos(store.add("Mug", "mug"), [indexed("refs/mug0.jpg"), indexed("refs/mug1.jpg")])
    emb.run_jobs()
    config = TagConfig(top_k=2, stage2="recognize", background_quantile=0.0, stage2_default=0.0, stage1_default=-1)
    tagger = Tagger(db, model, emb, config)
    report = tagger.run()
    # Photos that are no concept's own get both concepts as candidates: two calls each; the others one.
    n = db.execute("SELECT count(*) FROM photos").fetchone()[0]
    assert report.stage1_candidates == n and report.stage2_calls == 2 * (n - 5) + 5
    assert report.calibration_calls == (3 + 2) * 2 + (2 + 3) * 2  # the same call on each concept's photos
    suggested = store.tags(statuses=("suggested",))
    assert len(suggested) == report.suggestions > 0
    # Thresholds of 0 (never above the default): every candidate is tagged, so a photo can carry both concepts,
    # and "together" finds exactly the photos tagged with both.
    assert report.suggestions == report.stage2_calls
    both = {t.photo_id for t in suggested if t.concept == "Bo"} & {t.photo_id for t in suggested if t.concept == "Mug"}
    assert len(both) == n - 5
    from rrg_local.concepts.ask import Asker

    together = Asker(store, model, emb).ask("Photos of Bo and Mug together")
    tagged = store.tags()  # suggested and confirmed (references are confirmed)
    with_both = {t.photo_id for t in tagged if t.concept == "Bo"} & {t.photo_id for t in tagged if t.concept == "Mug"}
    assert {pid for pid, _ in together.citations} == with_both and both < with_both
    for t in suggested:
        c = store.get(t.concept_id)
        text = prompts.ConceptText(c.name, c.category, c.coarse, c.detailed)
        assert t.score == pytest.approx(tasks.recognize(model, emb.image(t.photo_id), text, reasoning=False).p_yes,
                                        abs=1e-3)  # fmt: skip
