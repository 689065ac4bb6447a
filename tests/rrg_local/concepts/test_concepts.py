"""Concepts end to end on real SQLite and the real (tiny) llama.cpp model."""

import datetime
import re

import pytest

from rrg_local.concepts.ask import Asker
from rrg_local.concepts.describe import DescribeConfig, hard_negatives, write_description
from rrg_local.concepts.store import ConceptError, score_text
from rrg_local.concepts.tagging import TagConfig, Tagger
from rrg_local.jobs import Jobs


def test_store_names_and_removal_keep_photos(db, indexed, stores):
    store, _ = stores
    bo = store.add("<Bo>", "dog")
    with pytest.raises(ConceptError, match="already exists"):
        store.add("bo", "dog")
    store.add_photos(bo, [indexed("refs/bo0.jpg")])
    assert store.get("BO").id == bo.id and store.get("<bo>").name == "Bo"
    bo = store.rename(bo, "Bobo")
    assert store.find("bo") is None and store.get("bobo").id == bo.id
    with pytest.raises(ConceptError, match="at most 5"):
        store.add_photos(bo, range(1, 8))
    photos = db.execute("SELECT count(*) FROM photos").fetchone()[0]
    store.remove(bo)
    assert store.all() == [] and db.execute("SELECT count(*) FROM photos").fetchone()[0] == photos
    assert db.execute("SELECT count(*) FROM tags").fetchone()[0] == 0


def test_editing_a_concept_bumps_its_version_and_queues_the_library(db, indexed, stores):
    store, _ = stores
    bo = store.add("Bo", "dog")
    jobs = Jobs(db)
    for job in jobs.claim("tag", 100):
        jobs.finish([job.id])
    bo2 = store.set_description(bo, "A photo of a dog", "The dog has a patch.")
    assert bo2.version == bo.version + 1 and bo2.description_source == "user"
    assert jobs.counts()["tag"]["pending"] == db.execute("SELECT count(*) FROM photos").fetchone()[0]


def test_description_is_chosen_by_the_reference_game(db, indexed, stores, model):
    store, emb = stores
    mug = store.add_photos(store.add("Mug", "dog"), [indexed("refs/mug0.jpg"), indexed("refs/mug1.jpg")])
    bo = store.add_photos(store.add("Bo", "dog"), [indexed(f"refs/bo{i}.jpg") for i in range(3)])
    negs = hard_negatives(store, emb, bo, indexed("refs/bo0.jpg"), 2)
    assert set(negs) == store.positives(mug)  # other concepts of the same category first
    bo = write_description(model, store, emb, bo, DescribeConfig(samples_per_photo=2, negatives=2))
    cands = store.candidates(bo)
    assert len(cands) >= 3 and sum(c["chosen"] for c in cands) == 1
    for c in cands:
        assert 0.0 <= c["score"] <= 1.0 and len(c["games"]) == 2  # judged on the 2 photos it was not written from
        for g in c["games"]:
            assert g["pool"][0] == g["target"] and len(g["probs"]) == 3
    best = max(cands, key=lambda c: c["score"])
    chosen = next(c for c in cands if c["chosen"])
    assert chosen["score"] == best["score"]
    assert (bo.coarse, bo.detailed) == (chosen["coarse"], chosen["detailed"]) and bo.description_source == "speaker"


def test_single_reference_falls_back_to_one_description(db, indexed, stores, model):
    store, emb = stores
    bo = store.add_photos(store.add("Bo", "dog"), [indexed("refs/bo0.jpg")])
    bo = write_description(model, store, emb, bo)
    (only,) = store.candidates(bo)
    assert only["chosen"] and only["score"] is None


def test_two_stage_tagging_writes_suggestions_and_stays_under_one_call_per_photo(db, indexed, stores, model):
    store, emb = stores
    bo = store.add_photos(store.add("Bo", "dog"), [indexed(f"refs/bo{i}.jpg") for i in range(3)])
    store.add_photos(store.add("Mug", "mug"), [indexed("refs/mug0.jpg"), indexed("refs/mug1.jpg")])
    emb.run_jobs()
    tagger = Tagger(db, model, emb, TagConfig(stage2_default=0.0))  # keep every stage-2 pick: test the plumbing
    protos = {p.concept.name: p for p in tagger.prototypes()}
    report = tagger.run()
    n = db.execute("SELECT count(*) FROM photos").fetchone()[0]
    assert report.photos == n and report.failed == 0
    assert report.stage2_calls == report.stage1_candidates <= n
    assert report.reasoning_calls == report.suggestions
    # The re-encoded copies of Bo's references are near-identical: stage 1 must find Bo for them.
    for rel in ("copies/bo0-again.jpg", "copies/bo1-again.jpg"):
        sims = float((protos["Bo"].vectors @ emb.get(indexed(rel))).max())
        assert sims >= protos["Bo"].threshold
    suggested = store.tags(statuses=("suggested",))
    assert len(suggested) == report.suggestions
    for t in suggested:
        assert t.score is not None and t.stage1 is not None and isinstance(t.reasoning, str)
    # References are confirmed tags, never suggestions.
    assert {t.photo_id for t in store.tags(bo, statuses=("confirmed",))} == store.photos(bo, "reference")


def test_likelihood_stage2_scores_captions_against_the_concepts_own_photos(db, indexed, stores, model):
    from rrg_local.concepts.tagging import likelihood_score
    from rrg_local.vlm import tasks
    from rrg_local.vlm.prompts import ConceptText

    store, emb = stores
    refs = [indexed(f"refs/bo{i}.jpg") for i in range(3)]
    bo = store.add_photos(store.add("Bo", "dog"), refs)
    bo = store.set_description(bo, "A photo of a small dog.", "The dog has a white patch over one eye.")
    emb.run_jobs()
    tagger = Tagger(db, model, emb, TagConfig(stage2="likelihood", calibrate=False, reasoning=False))
    text = ConceptText(bo.name, bo.category, bo.coarse, bo.detailed)
    own = {p: tasks.caption_likelihood(model, emb.image(p), text).logprob for p in refs}
    other = indexed("others/o2.jpg")
    result = tagger.stage2(emb.image(other), [bo])
    assert result.calls == 1 + len(refs)  # its own photos are scored once, then cached
    expected = likelihood_score(tasks.caption_likelihood(model, emb.image(other), text).logprob, list(own.values()))
    assert result.scores[0] == pytest.approx(expected, abs=1e-4) and result.labels == ("Yes",)
    # One of its own photos is compared with the others only (leave one out), and nothing is scored again.
    again = tagger.stage2(emb.image(refs[0]), [bo])
    assert again.calls == 1
    assert again.scores[0] == pytest.approx(likelihood_score(own[refs[0]], [own[refs[1]], own[refs[2]]]), abs=1e-4)
    # A new description is a new caption: its references are scored afresh.
    bo = store.set_description(bo, "A photo of a dog.", "The dog has a long tail.")
    assert tagger.stage2(emb.image(other), [bo]).calls == 1 + len(refs)
    report = tagger.run()
    assert report.failed == 0 and report.stage2_calls >= report.stage1_candidates


def test_a_photo_stage_1_is_sure_of_is_tagged_whatever_stage_2_says(db, indexed, stores, model):
    from rrg_local.concepts.tagging import retrieve, stage1_margin

    store, emb = stores
    store.add_photos(store.add("Bo", "dog"), [indexed(f"refs/bo{i}.jpg") for i in range(3)])
    store.add_photos(store.add("Mug", "mug"), [indexed("refs/mug0.jpg"), indexed("refs/mug1.jpg")])
    emb.run_jobs()
    # A listener cut nothing clears: only stage 1's sure hits can be tagged.
    strict = dict(stage2_default=2.0, calibrate=False, reasoning=False)
    probe = Tagger(db, model, emb, TagConfig(**strict))
    protos = probe.prototypes()
    margins = {}
    for (pid,) in db.execute("SELECT id FROM photos"):
        known = {p.concept.id for p in protos if pid in p.positives}
        hits = [(p, s) for p, s in retrieve(emb.get(pid), protos, 3) if p.concept.id not in known]
        if hits:
            margins[pid] = (hits[0][0].concept.name, stage1_margin(emb.get(pid), protos, hits[0][0]))
    cut = sorted(m for _, m in margins.values())[len(margins) // 2]  # about half the candidates are sure
    sure = {(pid, name) for pid, (name, m) in margins.items() if m >= cut}
    assert 0 < len(sure) < len(margins)
    report = Tagger(db, model, emb, TagConfig(**strict, sure_margin=cut)).run()
    assert report.sure == report.suggestions == len(sure) and report.stage2_calls == len(margins)
    assert {(t.photo_id, t.concept) for t in store.tags(statuses=("suggested",))} == sure
    for t in store.tags(statuses=("suggested",)):
        assert 0.0 <= t.score <= 1.0  # still stage 2's score, on its own scale
        assert t.sure == pytest.approx(margins[t.photo_id][1]) and t.sure >= cut  # and why it was tagged anyway
        assert f"stage 1 sure: +{t.sure:.2f}" in score_text(t)


def test_with_one_concept_stage_2_always_decides(db, indexed, stores, model):
    store, emb = stores
    store.add_photos(store.add("Bo", "dog"), [indexed(f"refs/bo{i}.jpg") for i in range(3)])
    emb.run_jobs()
    # Beating no other concept is no evidence: even the smallest margin does not tag past stage 2's "no".
    report = Tagger(db, model, emb, TagConfig(stage2_default=2.0, calibrate=False, reasoning=False,
                                              sure_margin=1e-9)).run()  # fmt: skip
    assert report.stage1_candidates > 0 and report.sure == report.suggestions == 0


def test_review_turns_verdicts_into_references_and_negatives(db, indexed, stores):
    store, _ = stores
    bo = store.add_photos(store.add("Bo", "dog"), [indexed("refs/bo0.jpg")])
    yes, no = indexed("copies/bo0-again.jpg"), indexed("others/o1.jpg")
    store.write_tags(yes, [{"concept_id": bo.id, "score": 0.8, "stage1": 0.9, "version": 1}], model="m")
    store.write_tags(no, [{"concept_id": bo.id, "score": 0.6, "stage1": 0.8, "version": 1}], model="m")
    store.review(yes, bo, True)
    store.review(no, bo, False)
    assert store.photos(bo, "confirmed") == {yes} and store.photos(bo, "negative") == {no}
    assert yes in store.positives(bo)
    assert store.verdicts(bo) == ([0.8], [0.6])
    # A later machine pass never overwrites a person's verdict.
    store.write_tags(no, [{"concept_id": bo.id, "score": 0.99, "stage1": 0.9, "version": 2}], model="m")
    assert [t.status for t in store.tags(bo, statuses=("rejected",))] == ["rejected"]
    # New positives change stage 1: the whole library is queued again, the concept's version moves on.
    db.execute("UPDATE jobs SET state = 'done' WHERE kind = 'tag'")
    after = store.requeue(bo)
    assert after.version == store.get(bo.id).version > bo.version
    n = db.execute("SELECT count(*) FROM photos WHERE missing = 0").fetchone()[0]
    assert Jobs(db).counts()["tag"].get("pending", 0) == n


def test_tagging_resumes_where_it_stopped(db, indexed, stores, model):
    store, emb = stores
    store.add_photos(store.add("Bo", "dog"), [indexed(f"refs/bo{i}.jpg") for i in range(3)])
    first = Tagger(db, model, emb).run(limit=4)
    assert first.photos == 4
    rest = Tagger(db, model, emb).run()
    n = db.execute("SELECT count(*) FROM photos").fetchone()[0]
    assert first.photos + rest.photos == n
    assert Jobs(db).counts()["tag"] == {"done": n}


def test_library_questions_cite_tagged_photos(db, indexed, stores, model):
    store, emb = stores
    bo = store.add_photos(store.add("Bo", "dog"), [indexed("refs/bo0.jpg"), indexed("refs/bo2.jpg")])
    gm = store.add_photos(store.add("grandma", "person"), [indexed("refs/bo2.jpg")])
    store.write_tags(
        indexed("copies/bo1-again.jpg"), [{"concept_id": bo.id, "score": 0.7, "stage1": 0.9, "version": 1}], model="m"
    )
    asker = Asker(store, model, emb)
    shown = asker.ask("Show me photos of <bo>")
    assert [pid for pid, _ in shown.citations] == [
        indexed("refs/bo0.jpg"),
        indexed("refs/bo2.jpg"),
        indexed("copies/bo1-again.jpg"),
    ]
    assert shown.unsure and "1 of them is an unconfirmed suggestion" in shown.text
    last = asker.ask("When did I last see Bo?")
    assert last.citations == [(indexed("copies/bo1-again.jpg"), shown.citations[-1][1])] and "2023-06-01" in last.text
    first = asker.ask("When did I first see Bo?")
    assert first.citations == [shown.citations[0]] and first.text.startswith("The first photo of <Bo> was taken on ")
    assert last.unsure and last.text.endswith(" It is an unconfirmed suggestion (rrg review).")  # that photo's own
    assert not first.unsure and "suggestion" not in first.text  # a reference photo
    together = asker.ask("Photos of Bo and Grandma together")
    assert [pid for pid, _ in together.citations] == [indexed("refs/bo2.jpg")] and not together.unsure
    assert asker.ask("How many photos of bo in 2023?").text.startswith("3 photos of <Bo> in 2023")
    assert asker.ask("How many photos of bo in May 2023?").text.startswith("2 photos of <Bo> in May 2023")
    june = asker.ask("Show me Bo from jun 2023")
    assert june.citations == [shown.citations[-1]] and "It is an unconfirmed suggestion" in june.text  # the copy
    beach = asker.ask("Show me Bo at the beach")
    # One or two checks per tagged photo (yes / no; where, when the answer was no), kept: asked again, none.
    assert 3 <= beach.vlm_calls <= 6 and set(beach.citations) <= set(shown.citations)
    assert (again := asker.ask("Show me Bo at the beach")).citations == beach.citations and again.vlm_calls == 0
    # Bounded by max_checks, the most likely photo first; the rest on the next ask.
    snow = Asker(store, model, emb, max_checks=1).ask("Show me Bo in the snow")
    assert 1 <= snow.vlm_calls <= 2 and snow.unsure
    assert "I have looked at 1 of the 3 photos for snow so far; ask again to look at 1 more." in snow.text
    assert 2 <= asker.ask("Show me Bo in the snow").vlm_calls <= 4
    # About the concept itself: what rrg-local knows (its description), citing the photos it was taught from.
    looks = asker.ask("What does Bo look like?")
    assert looks.text.startswith("<Bo> (dog): ") and looks.vlm_calls == 0
    assert [pid for pid, _ in looks.citations] == [indexed("refs/bo0.jpg"), indexed("refs/bo2.jpg")]
    unknown = asker.ask("Show me Rex")
    assert unknown.unsure and "<Bo>" in unknown.text
    del gm


def test_questions_naming_no_concept_are_about_the_whole_library(db, indexed, stores, model):
    store, emb = stores
    store.add_photos(store.add("Bo", "dog"), [indexed("refs/bo0.jpg")])
    photos = db.execute("SELECT count(*) FROM photos").fetchone()[0]
    by_year = Asker(store, None, None).ask("How many photos from 2023?")  # capture dates only: no model needed
    assert by_year.text.startswith(f"{photos} photos from 2023") and by_year.vlm_calls == 0
    assert Asker(store, None, None).ask("Show me photos from 2019").text == "I found no photos from 2019."
    this_year = datetime.date.today().year  # the fixture's photos are from 2023
    assert Asker(store, None, None).ask("Photos from this year").text == f"I found no photos from {this_year}."
    june = db.execute("SELECT id FROM photos WHERE taken_at LIKE '2023-06-%' ORDER BY taken_at, id").fetchall()
    in_june = Asker(store, None, None).ask("Show me photos from June 2023")
    assert len(june) >= 2 and [pid for pid, _ in in_june.citations] == [r[0] for r in june]
    assert in_june.text.startswith(f"{len(june)} photos from June 2023:")

    def checked() -> list[int]:
        return [r[0] for r in db.execute("SELECT photo_id FROM scene_checks WHERE scene = 'beach' ORDER BY photo_id")]

    newest_first = [r[0] for r in db.execute("SELECT id FROM photos ORDER BY taken_at DESC, id DESC")]
    first = Asker(store, model, emb, max_checks=2).ask("Show me photos at the beach")
    assert 2 <= first.vlm_calls <= 4 and checked() == sorted(newest_first[:2])  # the newest two, kept
    assert f"I have looked at 2 of the {photos} photos for beach so far; ask again to look at 2 more." in first.text
    again = Asker(store, model, emb, max_checks=2).ask("Show me photos at the beach")
    assert 2 <= again.vlm_calls <= 4 and checked() == sorted(newest_first[:4])  # two more, none asked twice
    rest = Asker(store, model, emb, max_checks=100).ask("How many photos at the beach?")
    assert len(checked()) == photos and "looked at" not in rest.text
    said = dict(db.execute("SELECT photo_id, found FROM scene_checks WHERE scene = 'beach'").fetchall())
    assert sorted(pid for pid, _ in rest.citations) == sorted(pid for pid, found in said.items() if found)
    assert Asker(store, model, emb).ask("Show me photos at the beach").vlm_calls == 0  # all known now
    oldest = Asker(store, model, emb, max_checks=1).ask("When was the first photo in the snow?")
    snow = [r[0] for r in db.execute("SELECT photo_id FROM scene_checks WHERE scene = 'snow'")]
    assert snow == [newest_first[-1]] and oldest.vlm_calls in (1, 2)  # "first": the oldest photo is looked at first
    unknown = Asker(store, model, emb).ask("Show me the dog")  # neither a concept, a year nor a place
    assert unknown.unsure and unknown.text.startswith("I don't know who or what that is.")


def test_photo_questions_use_the_listener(indexed, stores, model, library):
    from rrg_local.vlm.protocol import ImageRef

    store, emb = stores
    bo = store.add_photos(store.add("Bo", "dog"), [indexed("refs/bo0.jpg")])
    store.set_description(bo, "A photo of a dog", "The dog has a white patch.")
    asker = Asker(store, model, emb)
    ans = asker.ask("Is <Bo> in this photo?", photo=ImageRef(library / "copies/bo0-again.jpg"))
    assert ans.text.startswith("<Bo>: ") and "P(yes) = " in ans.text and ans.vlm_calls == 2
    pieces = []
    open_ans = asker.ask("What is Bo doing?", photo=ImageRef(library / "others/o1.jpg"), on_text=pieces.append)
    assert open_ans.vlm_calls == 1 and "".join(pieces).strip() == open_ans.text


def test_photo_questions_read_p_yes_against_the_concepts_own_cut(indexed, stores, model, library):
    import re

    from rrg_local.concepts.calibration import own_threshold, recognition_threshold
    from rrg_local.vlm.protocol import ImageRef

    store, emb = stores
    mug = store.add_photos(store.add("Mug", "mug"), [indexed("refs/mug0.jpg"), indexed("refs/mug1.jpg")])
    write_description(model, store, emb, mug)
    bo = store.add_photos(store.add("Bo", "dog"), [indexed(f"refs/bo{i}.jpg") for i in range(3)])
    bo = write_description(model, store, emb, bo)
    # The cut comes from the reference games that chose the description: its photos against the hard negatives.
    games = next(c for c in store.candidates(bo) if c["chosen"])["games"]
    assert games and all(len(g["probs"]) == 3 for g in games)  # the target and 2 of Mug's photos
    pos, neg = [g["probs"][0] for g in games], [p for g in games for p in g["probs"][1:]]
    cut = recognition_threshold(store, bo)
    assert cut == own_threshold(pos, neg, 0.5)
    answer = Asker(store, model, emb).ask("Is <Bo> in this photo?", photo=ImageRef(library / "others/o1.jpg"))
    m = re.match(r"<Bo>: (probably )?(yes|no) \(P\(yes\) = ([\d.]+), <Bo>'s cut ([\d.]+)\)", answer.text)
    assert m and float(m.group(4)) == pytest.approx(cut, abs=0.005), answer.text
    assert (m.group(2) == "yes") == (float(m.group(3)) >= float(m.group(4)))
    assert answer.unsure == bool(m.group(1))
    # A description a person wrote was not chosen by games: the default cut.
    edited = store.set_description(bo, "A photo of a dog", "The dog has a white patch.")
    assert recognition_threshold(store, edited) == 0.5
    assert recognition_threshold(store, edited, 0.4) == 0.4


def test_photo_questions_take_a_persons_word_before_the_model(db, indexed, stores, model, library, tmp_path):
    import shutil

    from rrg_local.vlm.protocol import ImageRef

    store, emb = stores
    bo = store.add_photos(store.add("Bo", "dog"), [indexed("refs/bo0.jpg")])
    store.add_photos(store.add("mug", "mug"), [indexed("refs/mug0.jpg")])
    store.review(indexed("others/o1.jpg"), bo, confirm=False)
    store.review(indexed("others/o2.jpg"), bo, confirm=True)
    store.write_tags(
        indexed("others/o3.jpg"), [{"concept_id": bo.id, "score": 0.31, "stage1": 0.8, "version": 1}], model="m"
    )
    asker = Asker(store, model, emb)

    def ask(rel, question="Is <Bo> in this photo?"):
        return asker.ask(question, photo=ImageRef(library / rel))

    ref, rejected, confirmed = ask("refs/bo0.jpg"), ask("others/o1.jpg"), ask("others/o2.jpg")
    assert ref.text == "<Bo>: yes: this is one of <Bo>'s reference photos." and ref.vlm_calls == 0
    assert ref.citations[0][0] == indexed("refs/bo0.jpg") and not ref.unsure
    assert rejected.text == "<Bo>: no: you said this photo does not show <Bo>." and rejected.vlm_calls == 0
    assert confirmed.text.startswith("<Bo>: yes: you confirmed") and confirmed.vlm_calls == 0
    # An unconfirmed suggestion: the model looks, and the answer says what auto-tagging thought.
    suggested = ask("others/o3.jpg")
    assert suggested.vlm_calls == 2 and "auto-tagging suggested <Bo> here (score 0.31, not confirmed" in suggested.text
    if "asked directly the model says no" in suggested.text:
        assert suggested.unsure and suggested.text.startswith("<Bo>: not sure: ")
    # Two concepts: one known, one the model judges; the photo id can be given instead of found by path.
    both = asker.ask(
        "Is Bo or mug in this photo?", photo=emb.image(indexed("refs/mug0.jpg")), photo_id=indexed("refs/mug0.jpg")
    )
    first, second = both.text.splitlines()
    assert first.startswith("<Bo>: ") and "P(yes) = " in first
    assert second == "<mug>: yes: this is one of <mug>'s reference photos."
    assert both.vlm_calls == 2
    # The same bytes outside the library are just a photo: the model is asked.
    outside = tmp_path / "elsewhere.jpg"
    shutil.copy(library / "refs/bo0.jpg", outside)
    fresh = asker.ask("Is <Bo> in this photo?", photo=ImageRef(outside))
    assert fresh.vlm_calls == 2 and "P(yes) = " in fresh.text


def bo_and_a_suggested_mug(store, indexed):
    """Bo (two reference photos) and mug (one), with auto-tagging's suggestion of mug on others/o3.jpg."""
    bo = store.add_photos(store.add("Bo", "dog"), [indexed("refs/bo0.jpg"), indexed("refs/bo2.jpg")])
    mug = store.add_photos(store.add("mug", "mug"), [indexed("refs/mug0.jpg")])
    store.write_tags(
        indexed("others/o3.jpg"), [{"concept_id": mug.id, "score": 0.31, "stage1": 0.8, "version": 1}], model="m"
    )
    return bo, mug


def test_who_is_in_a_photo_is_what_a_person_said_else_what_the_tagger_decides(db, indexed, stores, model, library):
    from rrg_local.concepts.calibration import calibrate_all
    from rrg_local.concepts.tagging import TagReport
    from rrg_local.vlm.protocol import ImageRef

    store, emb = stores
    bo, mug = bo_and_a_suggested_mug(store, indexed)
    asker = Asker(store, model, emb)

    def who(rel):
        return asker.ask("Who is in this photo?", photo=ImageRef(library / rel))

    ref = who("refs/bo0.jpg")
    assert ref.text == "<Bo>: yes: this is one of <Bo>'s reference photos." and ref.vlm_calls == 0 and not ref.unsure
    suggested = who("others/o3.jpg")
    assert suggested.text.startswith("<mug>: probably: auto-tagging suggested <mug> here (score 0.31, not confirmed")
    assert suggested.vlm_calls == 0 and suggested.unsure
    # Nobody said anything about this photo and it has no tag: the answer is the tagger's decision, made now.
    pid = indexed("copies/bo1-again.jpg")
    # Stage 1 lets every concept through (a wide margin, no background cut): stage 2, the model, decides.
    config = TagConfig(stage1_margin=1.0, stage1_default=-1.0, background_quantile=0.0, stage2_budget=0.0)
    tagger = Tagger(db, model, emb, config)
    protos = tagger.prototypes()
    tagger.calibrated = calibrate_all(tagger, protos, TagReport())
    decided = {bo.id: "Bo", mug.id: "mug"}
    expected = [decided[t["concept_id"]] for t in tagger.tag_photo(pid, protos, TagReport())]
    fresh = Asker(store, model, emb, tagging=config).ask(
        "Who is in this photo?", photo=ImageRef(library / "copies/bo1-again.jpg")
    )
    named = re.findall(r"^<(\w+)>: probably \(score [\d.]+, <\w+>'s cut [\d.]+\)", fresh.text, re.M)
    assert named == expected and fresh.unsure and fresh.vlm_calls >= 1
    if not expected:
        assert fresh.text.startswith("None of your 2 concepts, as far as I can tell (the model said none)")
    assert all(t.photo_id != pid for t in store.tags())  # asking writes no tag


def test_an_open_question_puts_the_photos_own_concepts_in_context(db, indexed, stores, model):
    import numpy as np

    store, emb = stores
    bo, mug = bo_and_a_suggested_mug(store, indexed)
    asker = Asker(store, model, emb)
    assert [c.name for c in asker.context_for(indexed("refs/bo0.jpg"))] == ["Bo"]  # a reference
    assert [c.name for c in asker.context_for(indexed("others/o3.jpg"))] == ["mug"]  # a suggestion
    assert [c.name for c in asker.context_for(None)] == ["Bo", "mug"]  # not in the library: the first five

    def unit(v):
        return v / np.linalg.norm(v)

    pid = indexed("others/o0.jpg")  # nobody said anything: the concepts stage 1 finds nearest, nearest first
    photo = unit(emb.get(pid))
    near = {c.name: max(float(unit(emb.get(p)) @ photo) for p in store.positives(c)) for c in (bo, mug)}
    assert [c.name for c in asker.context_for(pid)] == sorted(near, key=lambda n: -near[n])


def test_stage2_budget_bounds_the_photos_sent_to_stage_2(db, settings, stores, model, tmp_path):
    import numpy as np

    from rrg_local.concepts.tagging import background_threshold, concept_quantile, stage1_threshold
    from rrg_local.library.scan import Scanner
    from tests.conftest import write_jpeg

    store, emb = stores
    lib = tmp_path / "big"
    for i in range(64):
        write_jpeg(lib / f"p{i:02d}.jpg", 500 + i)
    Scanner(db, settings).scan([lib])
    ids = [r[0] for r in db.execute("SELECT id FROM photos ORDER BY id")]
    for c in range(4):
        store.add_photos(store.add(f"c{c}", "thing"), ids[2 * c : 2 * c + 2])
    emb.run_jobs()
    n = len(ids)
    lib_ids, vectors = emb.all_vectors()
    sent = {}
    for budget in (0.0, 0.1):
        config = TagConfig(background_quantile=0.5, stage2_budget=budget, stage1_default=-1.0, stage1_margin=1.0)
        tagger = Tagger(db, model, emb, config)
        q = concept_quantile(config, 4)
        assert q == (0.5 if budget == 0 else 0.975)
        for p in tagger.prototypes():  # each concept's cut: its references' own, or the quantile, the higher
            others = np.array([i not in p.positives for i in lib_ids])
            expected = max(stage1_threshold(p.vectors, config), background_threshold(p.vectors, vectors[others], q))
            assert p.threshold == pytest.approx(expected)
        Jobs(db).enqueue(ids, "tag", again=True)
        sent[budget] = tagger.run().stage1_candidates
    # Each concept passes about (1 - q) of the other photos (its own 2 always): 4 x 3% of 64 + 8 own at most.
    assert sent[0.1] <= 4 * (np.ceil(0.025 * (n - 2)) + 2) < sent[0.0]
