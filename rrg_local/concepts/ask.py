"""Questions: routed to the photo (the VLM looks) or to the library (tags and dates answer, the VLM checks).

`route()` and `find_concepts()` are pure. Questions about one photo go to the listener with the
mentioned concepts' names and descriptions in context ("Is Bo in this photo?" is a recognition with its
probability, read against the concept's own cut (`calibration.recognition_threshold`: a listener's P(Yes)
need not center on one half) and squared with an auto-tag suggestion; for a library photo a person already
judged, a reference, a confirmed or a rejected one, their word is the answer and the model is not asked).
"Who is in this photo?" is what a person said and auto-tagging suggested, else the tagger's decision made
now; an open question naming no concept gets the concepts known in the photo (else the nearest) as context.
Questions about the library ("Show me Bo at the beach", "When did I last see my blue mug?", "Photos of Bo
and grandma together") are answered from tags and capture dates; only a scene condition costs VLM calls (the
yes/no question, then the open "where" answer read for the place: `scene_check`), kept in `scene_checks` so
that a photo is checked once per model and place, at most `max_checks` new ones per question. A question
naming no concept, only a year or a scene ("Photos at the beach in 2023"), is about every photo. Questions
about a concept itself ("What does Bo look like?") are answered from its description. Every answer cites the
photos it rests on and says when it is unsure (unconfirmed suggestions, probabilities near the cut, checks
not yet made).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from rrg_local.concepts.calibration import recognition_threshold
from rrg_local.concepts.embeddings import EmbeddingStore
from rrg_local.concepts.store import Concept, ConceptStore, Tag, sure_text
from rrg_local.concepts.tagging import TagConfig, Tagger, TagReport
from rrg_local.db import utcnow
from rrg_local.library.query import list_photos, photo_at
from rrg_local.vlm import answers, prompts, tasks
from rrg_local.vlm.protocol import ImageRef, Message, OnText, VisionModel
from rrg_local.wording import count

UNSURE = 0.3  # a P(Yes) within this share of the way from the concept's cut to 0 or to 1 is "probably"
# What a person said about a photo answers "Is Bo in this photo?" without asking the model.
KNOWN = {
    "reference": (True, "this is one of <{name}>'s reference photos"),
    "confirmed": (True, "you confirmed <{name}> in this photo"),
    "negative": (False, "you said this photo does not show <{name}>"),
}


@dataclass(frozen=True)
class Route:
    target: str  # "photo" or "library"
    intent: str  # photo: is_in, who, open; library: show, last, first, count, about (the concept itself)
    concepts: tuple[str, ...] = ()  # names as stored
    scene: str | None = None
    year: int | None = None
    place: str | None = None  # the scene as the question put it ("in the snow"), for answers and checks
    month: int | None = None  # 1-12, with `year` ("in May 2024")

    def period(self) -> str | None:
        """The capture dates asked for as an ISO prefix: "2024", "2024-05", or None."""
        return None if not self.year else f"{self.year}-{self.month:02d}" if self.month else str(self.year)

    def when(self, prep: str) -> str:
        """The period for an answer: " in May 2024", " from 2024", or ""."""
        return f" {prep} {MONTHS[self.month - 1].title() + ' ' if self.month else ''}{self.year}" if self.year else ""


@dataclass
class Answer:
    text: str
    citations: list[tuple[int, str | None]] = field(default_factory=list)
    unsure: bool = False
    vlm_calls: int = 0


def find_concepts(question: str, names: Sequence[str]) -> list[str]:
    """Concept names mentioned in the question: whole words or phrases, any case, with or without <>.

    >>> find_concepts("Is <bo> with Grandma here?", ["Bo", "grandma", "Bob"])
    ['Bo', 'grandma']
    """
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for name in sorted(names, key=len, reverse=True):
        pattern = rf"(?<![\w]){re.escape(name)}(?![\w])"
        for m in re.finditer(pattern, question, flags=re.IGNORECASE):
            if not any(a < m.end() and m.start() < b for a, b in taken):
                taken.append((m.start(), m.end()))
                found.append((m.start(), name))
                break
    return [n for _, n in sorted(found)]


_IS_IN = re.compile(
    r"^\s*(is|are|does|do|can you see)\b.*\b(in|on|inside)\s+(this|the)\s+(photo|picture|image|pic)\b", re.I
)
_LAST = re.compile(r"\b(when|what day|what date)\b.*\b(last|most recently|latest)\b|\blast (time|photo|saw)\b", re.I)
_FIRST = re.compile(r"\b(when|what day|what date)\b.*\b(first|earliest)\b|\b(first|earliest) (time|photo)\b", re.I)
_COUNT = re.compile(r"\bhow many\b", re.I)
# "What does Bo look like?", "What colour is my mug?": about the concept itself, not its photos.
_ABOUT = re.compile(r"^\s*(what|which|how|describe|tell me about)\b", re.I)
_PHOTOS = re.compile(r"\b(photos?|pictures?|pics?|images?|shots?|show|find|list)\b", re.I)
_PLACES = (
    r"(beach|park|snow|kitchen|living room|bedroom|bathroom|garden|lake|sea|river|mountains?|forest|field|desert|"
    r"city|street|home|office|restaurant|playground|grass|pool|party|night|sunset|dusk)"
)
_SCENE = re.compile(r"\b(?:at|on|in)\s+(?:the\s+|a\s+)?" + _PLACES + r"\b", re.I)
# "beach photos", "photos of the snow", "pictures from the park": the place without its preposition.
_SCENE_BARE = re.compile(
    r"\b" + _PLACES + r"\s+(?:photos?|pictures?|pics?|images?|shots?)\b"
    r"|\b(?:photos?|pictures?|pics?|images?|shots?)\s+(?:of|from)\s+(?:the\s+|a\s+)?" + _PLACES + r"\b",
    re.I,
)
# The preposition an answer and the yes/no check put before a place named without one.
_AT = {"beach", "park", "lake", "sea", "river", "office", "restaurant", "playground", "pool", "party", "home",
       "night", "sunset", "dusk"}  # fmt: skip
_ON = {"grass", "street"}


def _place(scene: str) -> str:
    """A place as a sentence puts it (pure).

    >>> _place("beach"), _place("street"), _place("kitchen"), _place("night"), _place("home")
    ('at the beach', 'on the street', 'in the kitchen', 'at night', 'at home')
    """
    the = "" if scene in ("night", "sunset", "dusk", "home") else "the "
    return f"{'at' if scene in _AT else 'on' if scene in _ON else 'in'} {the}{scene}"


# Words an open answer may use for a scene instead of its own name ("Where was this photo taken?").
_SCENE_WORDS = {
    "beach": ("beach", "shore", "seaside", "sand"),
    "grass": ("grass", "lawn", "meadow", "field"),
    "snow": ("snow", "snowy"),
    "street": ("street", "road", "sidewalk"),
    "sea": ("sea", "ocean"),
    "mountains": ("mountain", "mountains"),
    "mountain": ("mountain", "mountains"),
    "home": ("home", "house", "living room", "kitchen", "bedroom"),
}
# "Who is in this photo?", "Which of my things are here?": asks for the person's concepts, none named.
_WHO = re.compile(
    r"\bwho\b|\bwhich of (?:my|mine)\b|\bwhich (?:of )?(?:my )?(?:concepts?|things|pets?|people)\b", re.I
)
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")  # fmt: skip
_RELATIVE = re.compile(r"\b(this|last)\s+(year|month)\b", re.I)
_YEAR = re.compile(
    r"\b(?:in|from|during)\s+(?:(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|"
    + "|".join(MONTHS)
    + r")\.?\s+)?((?:19|20)\d\d)\b",
    re.I,
)


def route(question: str, names: Sequence[str], *, has_photo: bool, today: date | None = None) -> Route:
    """Decide what answers the question (pure; "this year", "last month" are read against `today`, by default
    the real one).

    >>> route("Is <Bo> in this photo?", ["Bo"], has_photo=True)
    Route(target='photo', intent='is_in', concepts=('Bo',), scene=None, year=None, place=None, month=None)
    >>> route("Who is in this photo?", ["Bo"], has_photo=True).intent
    'who'
    >>> [route(q, ["Bo"], has_photo=False).intent for q in ("What does Bo look like?", "What photos of Bo are there?")]
    ['about', 'show']
    >>> [route(q, ["Bo"], has_photo=False).intent for q in ("When did I first see Bo?", "How many photos of Bo?")]
    ['first', 'count']
    >>> route("Show me Bo at the beach in 2023", ["Bo"], has_photo=False)  # doctest: +NORMALIZE_WHITESPACE
    Route(target='library', intent='show', concepts=('Bo',), scene='beach', year=2023, place='at the beach',
          month=None)
    >>> r = route("How many photos from Sept 2024?", [], has_photo=False)
    >>> r.period(), r.when("from")
    ('2024-09', ' from September 2024')
    >>> [route(q, [], has_photo=False).place for q in ("Show me the beach photos", "Pictures from the street")]
    ['at the beach', 'on the street']
    >>> asked = ("Bo this year", "Bo last year", "Photos from this month", "Bo last month", "When did I last see Bo?")
    >>> [route(q, ["Bo"], has_photo=False, today=date(2025, 1, 9)).period() for q in asked]
    ['2025', '2024', '2025-01', '2024-12', None]
    """
    mentioned = tuple(find_concepts(question, names))
    if has_photo:
        if mentioned:
            return Route("photo", "is_in" if _IS_IN.search(question) else "open", mentioned)
        return Route("photo", "who" if _WHO.search(question) else "open")
    intent = "last" if _LAST.search(question) else "first" if _FIRST.search(question) else "show"
    intent = "count" if intent == "show" and _COUNT.search(question) else intent
    scene = _SCENE.search(question)
    bare = None if scene else _SCENE_BARE.search(question)
    name = (scene.group(1) if scene else next(g for g in bare.groups() if g) if bare else "").lower() or None
    year = _YEAR.search(question)
    number, month = (int(year.group(2)), _month(year.group(1)) if year.group(1) else None) if year else (None, None)
    if not year and (relative := _RELATIVE.search(question)):
        number, month = _relative(relative.group(1).lower(), relative.group(2).lower(), today or date.today())
    if intent == "show" and not (name or number) and _ABOUT.search(question) and not _PHOTOS.search(question):
        intent = "about"
    return Route(
        "library",
        intent,
        mentioned,
        name,
        number,
        " ".join(scene.group(0).lower().split()) if scene else _place(name) if name else None,
        month,
    )


def _relative(which: str, unit: str, today: date) -> tuple[int, int | None]:
    """("this" / "last", "year" / "month") -> (year, month or None) seen from `today` (pure).

    >>> _relative("last", "month", date(2025, 1, 9)), _relative("this", "year", date(2025, 1, 9))
    ((2024, 12), (2025, None))
    """
    back = which == "last"
    if unit == "year":
        return today.year - back, None
    index = today.year * 12 + today.month - 1 - back
    return index // 12, index % 12 + 1


def _month(word: str) -> int:
    """A month's number from its name or abbreviation (pure).

    >>> _month("May"), _month("sept"), _month("December")
    (5, 9, 12)
    """
    return next(i for i, m in enumerate(MONTHS, 1) if m.startswith(word.lower()[:3]))


def names_scene(answer: str, scene: str) -> bool:
    """Whether an open answer to "Where was this photo taken?" names `scene` (or a word for it) (pure).

    >>> names_scene("The photo was taken on the beach.", "beach"), names_scene("On a sandy shore", "beach")
    (True, True)
    >>> names_scene("In the kitchen.", "snow"), names_scene("Snowboarding", "snow")
    (False, False)
    """
    words = _SCENE_WORDS.get(scene, (scene,))
    return any(re.search(rf"(?<![\w]){re.escape(w)}(?![\w])", answer, re.I) for w in words)


def unsure(p_yes: float, cut: float) -> bool:
    """Whether P(Yes) is too near the concept's cut to say plainly: within `UNSURE` of the way to 0 or to 1 (pure).

    >>> unsure(0.6, 0.5), unsure(0.7, 0.5), unsure(0.3, 0.35), unsure(0.2, 0.35)
    (True, False, True, False)
    """
    return cut - UNSURE * cut < p_yes < cut + UNSURE * (1 - cut)


def _suggested(tag: Tag) -> str:
    """An auto-tag suggestion as answers cite it (pure).

    >>> _suggested(Tag(1, 2, "Bo", "suggested", 0.41, 0.9, None, "2024-05-01", "a.jpg", 0.16)).split(" (")[1]
    'score 0.41, stage 1 sure: +0.16 over every other concept; not confirmed: rrg review)'
    """
    score = "" if tag.score is None else f"score {tag.score:.2f}, "
    sure = "" if tag.sure is None else f"{sure_text(tag.sure)}; "
    return f"auto-tagging suggested <{tag.concept}> here ({score}{sure}not confirmed: rrg review)"


def _dated(subject: str, photo_id: int, taken_at: str, path: str | None) -> str:
    """A first / last answer: `subject` and when and which photo (pure).

    >>> _dated("The last photo of <Bo>", 7, "2024-05-01T10:00:00", "a.jpg")
    'The last photo of <Bo> was taken on 2024-05-01 (photo 7: a.jpg).'
    """
    return f"{subject} was taken on {taken_at[:10]} (photo {photo_id}: {path})."


def _line(photo_id: int, taken_at: str, path: str | None) -> str:
    """One photo of a listed answer: id, day, path (pure)."""
    return f"  {photo_id:>6}  {taken_at[:10]}  {path}"


def _text(c: Concept) -> prompts.ConceptText:
    return prompts.ConceptText(c.name, c.category, c.coarse, c.detailed)


class Asker:
    def __init__(
        self,
        store: ConceptStore,
        model: VisionModel | None,
        embeddings: EmbeddingStore | None,
        *,
        max_checks: int = 10,
        tagging: TagConfig | None = None,
    ):
        self.store = store
        self.model = model
        self.emb = embeddings
        self.max_checks = max_checks
        # "Who is in this photo?" about a photo nobody judged: the tagger's decision, with these settings.
        self.tagging = tagging or TagConfig()

    def ask(
        self,
        question: str,
        *,
        photo: ImageRef | None = None,
        photo_id: int | None = None,
        on_text: OnText | None = None,
    ) -> Answer:
        """`photo_id`: the library's id of `photo`, when known (else looked up by the photo's path)."""
        concepts = {c.name: c for c in self.store.all()}
        r = route(question, list(concepts), has_photo=photo is not None)
        mentioned = [concepts[n] for n in r.concepts]
        if r.target == "photo":
            if self.model is None:
                raise ValueError("questions about a photo need a model (rrg model add ...)")
            if photo_id is None and isinstance(photo.source, (str, Path)):
                photo_id = photo_at(self.store.db, photo.source)
            return self._about_photo(question, photo, photo_id, r, mentioned, on_text)
        if not mentioned and (r.scene or r.year) and r.intent != "about":
            return self._whole_library(r)
        if not mentioned:
            known = ", ".join(f"<{n}>" for n in concepts) or "none yet (rrg concept add)"
            return Answer(f"I don't know who or what that is. Your concepts: {known}.", unsure=True)
        return self._about_library(r, mentioned)

    def _about_photo(self, question, photo, photo_id, r: Route, mentioned: list[Concept], on_text) -> Answer:
        if r.intent == "is_in":
            lines, unsure, calls, cites = [], False, 0, []
            for c in mentioned:
                role, tag = self.store.standing(photo_id, c) if photo_id is not None else (None, None)
                if role in KNOWN:  # a person said so: no need to look
                    said, why = KNOWN[role]
                    lines.append(f"<{c.name}>: {'yes' if said else 'no'}: {why.format(name=c.name)}.")
                    cites.append((photo_id, tag.path if tag else None))
                    continue
                line, doubt = self._look(photo, c, tag)
                calls += 2
                unsure |= doubt
                lines.append(line)
            return Answer("\n".join(lines), cites, unsure=unsure, vlm_calls=calls)
        if r.intent == "who" and photo_id is not None:
            return self._who(photo_id)
        context = mentioned or self.context_for(photo_id)
        text = tasks.ask(self.model, photo, question, [_text(c) for c in context], on_text=on_text)
        return Answer(text, vlm_calls=1)

    def context_for(self, photo_id: int | None) -> list[Concept]:
        """The concepts to put before an open question about a photo that names none: those known to be in it
        (your word, then auto-tagging's), else the three its stage-1 embedding is nearest, else the first five."""
        concepts = self.store.all()
        if photo_id is None:
            return concepts[:5]
        known = [c for c, _, _ in self._known_in(photo_id, concepts)]
        if known or self.emb is None:
            return (known or concepts)[:5]

        def unit(v: np.ndarray) -> np.ndarray:
            return v / (np.linalg.norm(v) or 1.0)

        photo = unit(self.emb.get(photo_id))
        near = [
            (max(float(unit(self.emb.get(p)) @ photo) for p in pos), c)
            for c in concepts
            if (pos := self.store.positives(c))
        ]
        return [c for _, c in sorted(near, key=lambda x: -x[0])][:3] or concepts[:5]

    def _known_in(self, photo_id: int, concepts: Sequence[Concept]) -> list[tuple[Concept, str | None, Tag | None]]:
        """The concepts a person placed in the photo (role "reference" or "confirmed") or auto-tagging suggested
        there (role None, the suggestion), in the order given."""
        known = []
        for c in concepts:
            role, tag = self.store.standing(photo_id, c)
            if role in ("reference", "confirmed") or (role is None and tag is not None and tag.status == "suggested"):
                known.append((c, role, tag))
        return known

    def _who(self, photo_id: int) -> Answer:
        """Which of the person's concepts a library photo shows: what they said and what auto-tagging suggested;
        for a photo with neither, the tagger's decision made now (stage 1, then stage 2 on its candidates), so the
        answer is the one `rrg tag` gives."""
        concepts = self.store.all()
        if not concepts:
            return Answer("You have no concepts yet (rrg concept add).", unsure=True)
        lines, unsure = [], False
        for c, role, tag in self._known_in(photo_id, concepts):
            if role is not None:
                lines.append(f"<{c.name}>: yes: {KNOWN[role][1].format(name=c.name)}.")
            else:
                unsure = True
                why = f" {tag.reasoning}" if tag.reasoning else ""
                lines.append(f"<{c.name}>: probably: {_suggested(tag)}.{why}")
        if lines:
            return Answer("\n".join(lines), [(photo_id, None)], unsure=unsure)
        if self.model is None or self.emb is None:
            raise ValueError("looking for your concepts in a photo needs a model (rrg model add ...)")
        from rrg_local.concepts.calibration import calibrate_all

        tagger = Tagger(self.store.db, self.model, self.emb, self.tagging)
        protos, report = tagger.prototypes(), TagReport()
        tagger.calibrated = calibrate_all(tagger, protos, report)  # stored: costs calls only after a change
        found = tagger.tag_photo(photo_id, protos, report)
        calls = report.stage2_calls + report.reasoning_calls + report.calibration_calls
        by_id = {c.id: c for c in concepts}
        for t in found:
            c = by_id[t["concept_id"]]
            why = f" {t['reasoning']}" if t.get("reasoning") else ""
            lines.append(
                f"<{c.name}>: probably (score {t['score']:.2f}, <{c.name}>'s cut {tagger.threshold(c):.2f}).{why}"
            )
        if not lines:
            looked = "no concept looked alike to stage 1" if not report.stage1_candidates else "the model said none"
            lines.append(f"None of your {len(concepts)} concepts, as far as I can tell ({looked}).")
        return Answer("\n".join(lines), [(photo_id, None)], unsure=True, vlm_calls=calls)

    def _look(self, photo: ImageRef, c: Concept, tag: Tag | None) -> tuple[str, bool]:
        """The listener's recognition of `c` in the photo against the concept's own cut, and its reason, squared
        with an auto-tag suggestion."""
        msgs = prompts.recognition(photo, _text(c))
        rec = answers.parse_recognition(self.model.run(msgs, answers.recognition_script(reasoning=False)))
        cut = recognition_threshold(self.store, c)
        yes = rec.p_yes >= cut
        why = tasks.explain(self.model, msgs, "Yes" if yes else "No")
        doubt = unsure(rec.p_yes, cut)
        verdict = ("probably " if doubt else "") + ("yes" if yes else "no")
        p = f"P(yes) = {rec.p_yes:.2f}, <{c.name}>'s cut {cut:.2f}"
        if tag is not None and tag.status == "suggested":
            suggested = _suggested(tag)
            if not yes:  # the two disagree: say both
                said = f"<{c.name}>: not sure: {suggested}, but asked directly the model says no ({p}). {why}"
                return said.strip(), True
            return f"<{c.name}>: {verdict} ({p}; {suggested}). {why}".strip(), doubt
        return f"<{c.name}>: {verdict} ({p}). {why}".strip(), doubt

    def scene_check(self, image: ImageRef, r: Route, mentioned: Sequence[Concept]) -> tuple[str | None, int]:
        """Whether the photo was taken in the route's scene, and the VLM calls that took: "asked" when the listener
        says yes to it; else asked openly where the photo was taken, "named" when the answer names the scene (a
        listener biased towards "No", as the demo model's is, or one never taught this yes/no question, still
        names the place it sees); None when neither."""
        check = [
            Message.of("system", prompts.LISTENER_SYSTEM),
            Message.of(
                "user",
                image,
                f'Was this photo taken {r.place}? Answer in JSON with the key "Answer" ("Yes" or "No").',
            ),
        ]
        if answers.parse_recognition(self.model.run(check, answers.recognition_script(reasoning=False))).answer:
            return "asked", 1
        where = "Where was this photo taken?"
        said = tasks.ask(self.model, image, where, [_text(c) for c in mentioned], max_tokens=24)
        return ("named" if names_scene(said, r.scene) else None), 2

    def _scene_checks(self, r: Route, order: list[int], context) -> tuple[dict[int, str | None], int, str]:
        """Whether each photo of `order` (ids, in the order to look at them) was taken in the route's scene:
        the checks kept in `scene_checks` (per model and scene: a photo costs the model once), then at most
        `max_checks` new ones made now and kept, with `context(photo id)` as the concepts before the open
        question. Returns photo id -> `scene_check`'s verdict for the photos checked so far, the calls made,
        and a note for the answer when some photos are left."""
        if self.model is None or self.emb is None:
            raise ValueError("checking a scene needs a model (rrg model add ...)")
        model, db = self.model.info.name, self.store.db
        kept = db.execute("SELECT photo_id, found FROM scene_checks WHERE model = ? AND scene = ?", [model, r.scene])
        wanted = set(order)
        seen = {pid: found for pid, found in kept.fetchall() if pid in wanted}
        calls = 0
        for pid in [p for p in order if p not in seen][: self.max_checks]:
            seen[pid], n = self.scene_check(self.emb.image(pid), r, context(pid))
            calls += n
            with db.conn:
                db.execute("INSERT OR REPLACE INTO scene_checks (photo_id, model, scene, found, created_at) "
                           "VALUES (?, ?, ?, ?, ?)", [pid, model, r.scene, seen[pid], utcnow()])  # fmt: skip
        left = len(order) - len(seen)
        note = (f" I have looked at {len(seen)} of the {count(len(order), 'photo')} for {r.scene} so far; ask "
                f"again to look at {min(left, self.max_checks)} more.") if left else ""  # fmt: skip
        return seen, calls, note

    def _whole_library(self, r: Route) -> Answer:
        """A question naming no concept, only a year and/or a scene ("Show me photos at the beach in 2023"): the
        library's photos of that year, and of those the ones the model says were taken there. Scene checks are
        kept (`scene_checks`), so each photo costs calls once per model and scene; at most `max_checks` new
        ones per question, newest first (oldest for "first"), and the answer says how far it got."""
        photos = list_photos(self.store.db, since=r.period(), until=r.period())
        calls, note, place = 0, "", f" {r.place}" if r.scene else ""
        if r.scene and photos:
            order = photos if r.intent == "first" else photos[::-1]  # the first photo: oldest first
            # As for an open question: the concepts known in the photo (else the nearest) as context; the demo
            # model, taught "where" only with concepts before it, answers nothing useful without.
            seen, calls, note = self._scene_checks(r, [p["id"] for p in order], self.context_for)
            photos = [p for p in photos if seen.get(p["id"])]
        when = r.when("from")
        if not photos:
            return Answer(f"I found no photos{place}{when}.{note}", unsure=True, vlm_calls=calls)
        cites = [(p["id"], p["path"]) for p in photos]
        if r.intent in ("last", "first"):
            p = photos[-1] if r.intent == "last" else photos[0]
            text = _dated(f"The {r.intent} photo{place}{when}", p["id"], p["taken_at"], p["path"])
            return Answer(text + note, [(p["id"], p["path"])], bool(note), calls)
        if r.intent == "count":
            return Answer(f"{count(len(photos), 'photo')}{place}{when}.{note}", cites, bool(note), calls)
        listing = "\n".join(_line(p["id"], p["taken_at"], p["path"]) for p in photos)
        return Answer(f"{count(len(photos), 'photo')}{place}{when}:{note}\n{listing}", cites, bool(note), calls)

    def _about_library(self, r: Route, mentioned: list[Concept]) -> Answer:
        if r.intent == "about":  # what rrg-local knows of each: its description, and the photos it was taught from
            lines, cites = [], []
            for c in mentioned:
                refs = sorted(self.store.photos(c, "reference"))
                said = _text(c).description() or "no description yet."
                lines.append(f"<{c.name}> ({c.category}): {said} (its description; reference photos: "
                             f"{', '.join(map(str, refs)) or 'none'})")  # fmt: skip
                cites += [(pid, None) for pid in refs]
            return Answer("\n".join(lines), cites)
        per_concept = [{t.photo_id: t for t in self.store.tags(c)} for c in mentioned]
        ids = set(per_concept[0]).intersection(*per_concept[1:])
        rows: list[Tag] = sorted((per_concept[0][i] for i in ids), key=lambda t: (t.taken_at, t.photo_id))
        if r.period():
            rows = [t for t in rows if t.taken_at.startswith(r.period())]
        names = " and ".join(f"<{c.name}>" for c in mentioned)
        calls, scene_note = 0, ""
        if r.scene and rows:
            likely = [t.photo_id for t in sorted(rows, key=lambda t: -(t.score or 1.0))]  # the most likely first
            seen, calls, scene_note = self._scene_checks(r, likely, lambda _: mentioned)
            rows = [t for t in rows if seen.get(t.photo_id)]
        where = f" {r.place}" if r.scene else ""
        when = r.when("in")
        unconfirmed = [t for t in rows if t.status != "confirmed"]
        unsure = bool(unconfirmed) or bool(scene_note)
        cites = [(t.photo_id, t.path) for t in rows]
        if not rows:
            return Answer(f"I found no photos of {names}{where}{when}.{scene_note}", unsure=True, vlm_calls=calls)
        note = ""
        if unconfirmed:
            n = len(unconfirmed)
            them = "is an unconfirmed suggestion" if n == 1 else "are unconfirmed suggestions"
            every = n == len(rows)
            lead = ("It" if n == 1 else "Both" if n == 2 else "All of them") if every else f"{n} of them"
            note += f" {lead} {them} (rrg review)."
        note += scene_note
        if r.intent in ("last", "first"):
            t = rows[-1] if r.intent == "last" else rows[0]
            said = " It is an unconfirmed suggestion (rrg review)." if t.status != "confirmed" else ""
            return Answer(
                _dated(f"The {r.intent} photo of {names}{where}{when}", t.photo_id, t.taken_at, t.path)
                + said
                + scene_note,
                [(t.photo_id, t.path)],
                bool(said) or bool(scene_note),
                calls,
            )
        if r.intent == "count":
            return Answer(f"{count(len(rows), 'photo')} of {names}{where}{when}.{note}", cites, unsure, calls)
        listing = "\n".join(
            _line(t.photo_id, t.taken_at, t.path)
            + (
                ""
                if t.status == "confirmed"
                else f"  (suggested, {t.score:.2f})"
                if t.score is not None
                else "  (suggested)"
            )
            for t in rows
        )
        return Answer(f"{count(len(rows), 'photo')} of {names}{where}{when}:{note}\n{listing}", cites, unsure, calls)
