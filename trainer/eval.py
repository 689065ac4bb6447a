"""Evaluate a run: recognition, identification and captioning recall, zero-shot vs trained, HF or GGUF.

`rrg-train eval --run RUN_DIR` calls `evaluate_run`. The inputs are the training ones (`data_root` +
`categories` from the run's config, or given): the test split by concept with the run's seed and
`test_fraction`, or every concept (`all_concepts`). Per column (zero-shot: the base as speaker; trained: the
run's adapter as speaker; the listener is the frozen base in both, as in training):

1. the speaker describes each concept greedily from its reference photo (the concept's first image);
2. the listener reads P(Yes | photo, concept) for every (photo, concept) pair of the split with the runtime's
   recognition prompt (`rrg_local.vlm.prompts.recognition`, no reasoning): `{"Answer": "` is forced and
   P(Yes) is softmax over the first tokens of "Yes" and "No" (`answers.option_probs`), on both backends;
3. `recognition_metrics`: positive accuracy (P(Yes) >= 0.5 on photos of the concept), negative accuracy
   (< 0.5 on photos of other concepts), weighted accuracy = (pos + neg) / 2;
4. `identification_accuracy`: one mined game per photo (`trainer.data.mine_games`, K = 3 by default); the
   candidates are the *concepts* of the game's K candidate photos (the target's concept and K-1 hard
   negative concepts); the listener picks the concept whose description gets the highest
   P(Yes | target photo, description). This reuses the P(Yes) matrix (no extra model calls);
5. captioning recall: the identification answer's caption (`tasks.identify` on GGUF, the same script
   replayed on HF) for each game's target photo with the K candidate concepts, counting captions that
   contain `<target concept name>`.

Backends: HF (`HFBackend`: base + peft adapter, adapter on for the speaker, off for the listener) and GGUF
through the runtime (`GGUFBackend`: the run's merged export as speaker, the base's f16 GGUF as listener;
`tasks.describe`, `tasks.recognize(reasoning=False)`, `tasks.identify`). The speaker prompts differ a little
between backends: the runtime forces `<coarse>` and constrains each tag with a grammar, HF decodes freely
from the same chat (`grpo.speaker_chat`); the listener prompt is the same on both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trainer.data import Example, Game, load_examples, mine_games, split_by_concept
from trainer.fast_vision import speed_up_vision
from trainer.grpo import ANSWER_PREFIX
from trainer.grpo import hf_chat as _hf_chat

METRICS = (
    "positive", "negative", "weighted", "identification", "game_identification", "game_identification_centred",
    "captioning", "context",
)  # fmt: skip
# What a description of the object should leave out: where it is (scene, position) and how (pose, occlusion).
CONTEXT = re.compile(
    r"\b(beach|grass|kitchen|snow|living room|street|sofa|floor|table|background|outdoors?|indoors?|left|right|"
    r"middle|cent(?:er|re)|corner|tilted|leaning|lying|standing|sitting|hidden|covered)\b",
    re.I,
)


@dataclass(frozen=True)
class Metrics:
    positive: float
    negative: float
    weighted: float
    identification: float
    captioning: float | None
    n_pairs: int
    n_games: int
    context: float | None = None  # share of descriptions that mention scene, position or pose
    # The reference game as RRG plays it (`trainer.train`): the target's description against the K candidate
    # photos, argmax of P(Yes | photo, description), on the games whose candidates do not include the photo the
    # description was written from. `identification` is the other way round (tagging's): the target photo
    # against each candidate concept's description.
    game_identification: float | None = None
    game_games: int | None = None  # how many games that is
    # The same games with each photo's P(Yes) logits centred on that photo's mean over every described concept:
    # a listener that knows how readily each photo draws a Yes, whatever it is asked.
    game_identification_centred: float | None = None


def context_share(descriptions: Sequence[tuple[str, str]]) -> float:
    """Share of (coarse, detailed) descriptions that mention the scene, the position or the pose.

    >>> context_share([("A photo of a red mug.", "The red mug has a star mark."),
    ...                ("A photo of a red mug.", "The red mug is plain on the beach.")])
    0.5
    """
    if not descriptions:
        return float("nan")
    return float(np.mean([bool(CONTEXT.search(" ".join(d))) for d in descriptions]))


def recognition_metrics(p_yes: np.ndarray, photo_concepts: Sequence[int]) -> tuple[float, float, float]:
    """(positive, negative, weighted) accuracy from P(Yes) of shape (photos, concepts) and each photo's concept.

    >>> recognition_metrics(np.array([[0.9, 0.6], [0.2, 0.4]]), [0, 1])
    (0.5, 0.5, 0.5)
    """
    p = np.asarray(p_yes, dtype=np.float64)
    labels = np.asarray(photo_concepts)
    positive = np.zeros_like(p, dtype=bool)
    positive[np.arange(len(labels)), labels] = True
    yes = p >= 0.5
    pos = float(yes[positive].mean()) if positive.any() else float("nan")
    neg = float((~yes[~positive]).mean()) if (~positive).any() else float("nan")
    return pos, neg, (pos + neg) / 2


def identification_accuracy(
    p_yes: np.ndarray, targets: Sequence[int], candidates: Sequence[Sequence[int]], answers: Sequence[int]
) -> float:
    """Share of games whose argmax of P(Yes | target photo, candidate concept) is the answer (ties: first).

    >>> identification_accuracy(np.array([[0.9, 0.6, 0.1], [0.2, 0.4, 0.3]]), [0, 1], [[0, 1], [2, 1]], [0, 0])
    0.5
    """
    p = np.asarray(p_yes, dtype=np.float64)
    hits = [int(np.argmax(p[t, list(c)])) == a for t, c, a in zip(targets, candidates, answers, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")


def game_accuracy(p_yes: np.ndarray, describer: Sequence[int], photos: Sequence[Sequence[int]], answers: Sequence[int]
                  ) -> float:  # fmt: skip
    """Share of games whose argmax of P(Yes | candidate photo, the target's description) is the answer (ties:
    first): `p_yes` of shape (photos, concepts), per game the target concept's column and the candidates' rows.

    >>> p = np.array([[0.9, 0.1], [0.6, 0.8], [0.7, 0.3]])
    >>> round(game_accuracy(p, [0, 1, 1], [[0, 1], [0, 1], [2, 0]], [0, 1, 1]), 3)  # the third picks row 2
    0.667
    """
    p = np.asarray(p_yes, dtype=np.float64)
    hits = [int(np.argmax(p[list(r), c])) == a for c, r, a in zip(describer, photos, answers, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")


def pairwise_by_label(
    scores: Sequence[Sequence[float]], answers: Sequence[int], labels: Sequence[Sequence[str | None]]
) -> dict[str, tuple[int, int]]:
    """Per label: (pairs the answer's score beat, pairs), pairing each game's answer with each other candidate,
    grouped by that candidate's label (the answer's own label is ignored; ties count as lost).

    >>> labels = [[None, "mark", "colour"], ["mark", None, "colour"]]
    >>> pairwise_by_label([[0.9, 0.6, 0.9], [0.2, 0.4, 0.1]], [0, 1], labels)
    {'mark': (2, 2), 'colour': (1, 2)}
    """
    out: dict[str, list[int]] = {}
    for row, answer, names in zip(scores, answers, labels, strict=True):
        for i, (score, name) in enumerate(zip(row, names, strict=True)):
            if i != answer:
                tally = out.setdefault(str(name), [0, 0])
                tally[0] += int(row[answer] > score)
                tally[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def caption_hit(caption: str, concept: str) -> bool:
    return f"<{concept}>" in caption


# ---- backends ------------------------------------------------------------------------------------


class Backend(Protocol):
    def describe(self, example: Example, trained: bool) -> tuple[str, str]: ...
    def p_yes(self, path: Path, concept: Any) -> float: ...
    def caption(self, path: Path, candidates: Sequence[Any]) -> str | None: ...


def _open(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


class HFBackend:
    """transformers base + optional peft adapter (speaker: adapter on when `trained`; listener: adapter off)."""

    def __init__(self, base: Path, adapter: Path | None = None, *, max_tokens: int = 80, device: str = "cpu"):
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32).to(device)
        speed_up_vision(model)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.eval()
        self.has_adapter = adapter is not None
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.processor = AutoImageProcessor.from_pretrained(base)
        self.max_tokens = max_tokens
        self.options = [self.tokenizer(o, add_special_tokens=False).input_ids[0] for o in ("Yes", "No")]

    def describe(self, example: Example, trained: bool) -> tuple[str, str]:
        import contextlib

        from rrg_local.vlm.prompts import parse_description
        from trainer import grpo

        if trained and not self.has_adapter:
            raise ValueError("no adapter loaded: cannot describe with the trained speaker")
        model, tok = self.model, self.tokenizer
        prompt = grpo.encode_prompt(
            model, tok, self.processor, _open(example.path), grpo.speaker_chat(example.category)
        )
        ctx = contextlib.nullcontext() if trained else grpo.adapter_off(model)
        with ctx:
            text = self._greedy(prompt)
        coarse, detailed = parse_description(text)
        return (coarse, detailed) if coarse or detailed else ("", " ".join(text.split()))

    def p_yes(self, path: Path, concept: Any) -> float:
        import torch

        from rrg_local.vlm.answers import option_probs
        from rrg_local.vlm.prompts import recognition
        from rrg_local.vlm.protocol import ImageRef
        from trainer import grpo

        model, tok = self.model, self.tokenizer
        base = grpo.encode_prompt(
            model, tok, self.processor, _open(path), _hf_chat(recognition(ImageRef(path), concept))
        )
        forced = tok(ANSWER_PREFIX, add_special_tokens=False, return_tensors="pt").input_ids
        prompt = grpo.Prompt(torch.cat([base.input_ids, forced], dim=1), base.pixel_values, base.image_grid_thw)
        with torch.no_grad(), grpo.adapter_off(model):
            logits = model(**grpo._model_inputs(model, prompt, None, 1)).logits[0, -1]
        probs, _ = option_probs(logits.float().cpu().numpy(), self.options)
        return float(probs[0])

    def caption(self, path: Path, candidates: Sequence[Any]) -> str | None:
        """The runtime's identification answer, replayed: pick the label from its logits, then the caption.

        Like the GGUF path (`tasks.identify(reasoning=False, caption=True)`): `{"Answer": "` is forced, the
        label with the most probable first token is appended, then `", "Caption": "` and a greedy caption up
        to its closing quote (no grammar here, so the text is cut at the first quote instead).
        """
        import torch

        from rrg_local.vlm.answers import option_probs
        from rrg_local.vlm.prompts import identification, letters
        from rrg_local.vlm.protocol import ImageRef
        from trainer import grpo

        model, tok = self.model, self.tokenizer

        def extend(prompt: Any, text: str) -> Any:
            ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
            return grpo.Prompt(torch.cat([prompt.input_ids, ids], dim=1), prompt.pixel_values, prompt.image_grid_thw)

        chat = _hf_chat(identification(ImageRef(path), candidates))
        prompt = extend(grpo.encode_prompt(model, tok, self.processor, _open(path), chat), ANSWER_PREFIX)
        labels = letters(len(candidates))
        firsts = [tok(label, add_special_tokens=False).input_ids[0] for label in labels]
        with torch.no_grad(), grpo.adapter_off(model):
            logits = model(**grpo._model_inputs(model, prompt, None, 1)).logits[0, -1]
            probs, _ = option_probs(logits.float().cpu().numpy(), firsts)
            prompt = extend(prompt, f'{labels[int(probs.argmax())]}", "Caption": "')
            text = self._greedy(prompt)
        return text.split('"')[0]

    def _greedy(self, prompt: Any) -> str:
        from trainer import grpo

        return grpo.greedy(self.model, self.tokenizer, prompt, self.max_tokens)


class GGUFBackend:
    """The runtime: `speaker` (the merged export) describes when `trained`, `listener` (the base) otherwise."""

    def __init__(self, listener: Any, speaker: Any | None = None, *, max_tokens: int = 80):
        self.listener, self.speaker, self.max_tokens = listener, speaker, max_tokens

    @classmethod
    def open(
        cls, base_text: Path, mmproj: Path, trained_text: Path | None = None, *, lora: Path | None = None,
        max_tokens: int = 80, n_threads: int = 0, image_max_tokens: int | None = None,
    ) -> GGUFBackend:  # fmt: skip
        """Base GGUF as listener; the trained speaker is `trained_text` (merged) or the base + `lora`.
        `image_max_tokens`: the cap the model was trained with (None: the runtime's default)."""
        from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel

        kw = {"image_max_tokens": image_max_tokens} if image_max_tokens else {}
        listener = LlamaVisionModel(LlamaConfig(model=base_text, mmproj=mmproj, n_threads=n_threads, **kw))
        speaker = None
        if trained_text is not None or lora is not None:
            text = trained_text or base_text
            speaker = LlamaVisionModel(LlamaConfig(model=text, mmproj=mmproj, n_threads=n_threads, lora=lora, **kw))
        return cls(listener, speaker, max_tokens=max_tokens)

    def close(self) -> None:
        self.listener.close()
        if self.speaker is not None:
            self.speaker.close()

    def describe(self, example: Example, trained: bool) -> tuple[str, str]:
        from rrg_local.vlm import tasks
        from rrg_local.vlm.protocol import ImageRef

        if trained and self.speaker is None:
            raise ValueError("no trained GGUF speaker")
        model = self.speaker if trained else self.listener
        d = tasks.describe(model, ImageRef(example.path), example.category, max_tokens=self.max_tokens)
        return d.coarse, d.detailed

    def p_yes(self, path: Path, concept: Any) -> float:
        from rrg_local.vlm import tasks
        from rrg_local.vlm.protocol import ImageRef

        return tasks.recognize(self.listener, ImageRef(path), concept, reasoning=False).p_yes

    def caption(self, path: Path, candidates: Sequence[Any]) -> str | None:
        from rrg_local.vlm import tasks
        from rrg_local.vlm.protocol import ImageRef

        return tasks.identify(self.listener, ImageRef(path), candidates, reasoning=False, caption=True).caption


# ---- evaluation ----------------------------------------------------------------------------------


def reference_photos(examples: Sequence[Example]) -> dict[str, Example]:
    """Each concept's first image (examples are sorted by concept, then file name)."""
    refs: dict[str, Example] = {}
    for e in examples:
        refs.setdefault(e.concept, e)
    return refs


def describe_concepts(backend: Backend, examples: Sequence[Example], trained: bool) -> dict[str, tuple[str, str]]:
    return {c: backend.describe(ref, trained) for c, ref in reference_photos(examples).items()}


def p_yes_matrix(backend: Backend, examples: Sequence[Example], descriptions: dict[str, tuple[str, str]]):
    """(P(Yes) of shape (photos, concepts), concept names in column order, `ConceptText`s)."""
    from rrg_local.vlm.prompts import ConceptText

    names = list(descriptions)
    cats = {e.concept: e.category for e in examples}
    concepts = [ConceptText(n, cats[n], *descriptions[n]) for n in names]
    p = np.array([[backend.p_yes(e.path, c) for c in concepts] for e in examples], dtype=np.float64)
    return p, names, concepts


def evaluate_games(
    backend: Backend, examples: Sequence[Example], games: Sequence[Game], descriptions: dict[str, tuple[str, str]]
) -> tuple[Metrics, list[list[float]]]:
    """All metrics for one column, given its descriptions (from `describe_concepts`), and per game P(Yes | target
    photo, each candidate's description) in candidate order."""
    p, names, concepts = p_yes_matrix(backend, examples, descriptions)
    col = {n: i for i, n in enumerate(names)}
    row = {e.path: i for i, e in enumerate(examples)}
    pos, neg, weighted = recognition_metrics(p, [col[e.concept] for e in examples])
    cands = [[col[c.concept] for c in g.candidates] for g in games]
    targets = [row[g.target.path] for g in games]
    ident = identification_accuracy(p, targets, cands, [g.answer for g in games])
    # The game's way round, on the games whose candidates leave out the photo each concept was described from
    # (`reference_photos`): there the description's scene or pose would point at that very photo.
    described = {e.path for e in reference_photos(examples).values()}
    clean = [g for g in games if not any(c.path in described and c.concept == g.target.concept for c in g.candidates)]
    game = ([col[g.target.concept] for g in clean], [[row[c.path] for c in g.candidates] for g in clean],
            [g.answer for g in clean])  # fmt: skip
    game_ident = game_accuracy(p, *game)
    q = np.clip(p, 1e-6, 1 - 1e-6)
    logits = np.log(q / (1 - q))
    game_centred = game_accuracy(logits - logits.mean(axis=1, keepdims=True), *game)
    captions = [backend.caption(g.target.path, [concepts[i] for i in c]) for g, c in zip(games, cands, strict=True)]
    hits = [caption_hit(cap, g.target.concept) for g, cap in zip(games, captions, strict=True) if cap is not None]
    captioning = float(np.mean(hits)) if hits and len(hits) == len(games) else None
    metrics = Metrics(
        pos, neg, weighted, ident, captioning, int(p.size), len(games), context_share(list(descriptions.values())),
        game_ident, len(clean), game_centred,
    )  # fmt: skip
    return metrics, [[float(p[t, c]) for c in cs] for t, cs in zip(targets, cands, strict=True)]


@dataclass
class EvalData:
    examples: list[Example]
    games: list[Game]


def eval_data(
    data_root: Path, categories: Path, *, test_fraction: float = 0.2, seed: int = 0, k: int = 3,
    all_concepts: bool = False, lookalikes: dict[str, list[str]] | None = None,
) -> EvalData:  # fmt: skip
    """The test split by concept (or every concept) and one mined game per photo (negatives from `lookalikes`
    first, `mine_games`)."""
    from trainer.train import pixel_embedding

    examples = load_examples(Path(data_root), Path(categories))
    if not all_concepts:
        _, examples = split_by_concept(examples, test_fraction, seed)
    if not examples:
        raise ValueError("the test split is empty (use all_concepts, or a run with test_fraction > 0)")
    k = min(k, len({e.concept for e in examples}))
    games = mine_games(examples, pixel_embedding, k=k, seed=seed, lookalikes=lookalikes) if k >= 2 else []
    return EvalData(examples, games)


def run_columns(backend: Backend, data: EvalData, label: str = "", trained: bool = True) -> dict[str, dict]:
    """`{"<label>zero-shot": {...}, "<label>trained": {...}}`, each with metrics and descriptions."""
    out = {}
    for name, on in (("zero-shot", False), ("trained", True)) if trained else (("zero-shot", False),):
        descriptions = describe_concepts(backend, data.examples, on)
        metrics, scores = evaluate_games(backend, data.examples, data.games, descriptions)
        out[f"{label}{name}"] = {"metrics": asdict(metrics), "descriptions": descriptions, "game_p_yes": scores}
    return out


def format_table(columns: dict[str, dict]) -> str:
    names = list(columns)
    width = max(12, *(len(n) for n in names))
    label = max(16, *(len(m) + 1 for m in METRICS))
    lines = ["metric".ljust(label) + "".join(n.rjust(width + 2) for n in names)]
    for m in METRICS:
        cells = []
        for n in names:
            v = columns[n]["metrics"].get(m)  # runs evaluated before a metric existed show "-"
            cells.append(("-" if v is None else f"{v:.3f}").rjust(width + 2))
        lines.append(m.ljust(label) + "".join(cells))
    return "\n".join(lines)


def base_gguf(run_dir: Path, run: dict) -> Any:
    """The base's f16 GGUF pair, converted once into RUN_DIR/eval-gguf/base (the listener and zero-shot speaker)."""
    from trainer.gguf import GGUFPair, convert

    dest = run_dir / "eval-gguf" / "base"
    text, mmproj = dest / "base-f16.gguf", dest / "mmproj-base-f16.gguf"
    if not (text.is_file() and mmproj.is_file()):
        convert(Path(run["base"]), dest, "f16", name="base", fallback_pre=run.get("pre_tokenizer"))
    return GGUFPair(text=text, mmproj=mmproj)


def evaluate_run(
    run_dir: Path, *, gguf: bool = False, hf: bool = True, data_root: Path | None = None,
    categories: Path | None = None, all_concepts: bool = False, max_tokens: int = 80, k: int | None = None,
    n_threads: int = 0, write: bool = True, gguf_lora: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Zero-shot vs trained (HF, and GGUF with `gguf`) on the run's test split; writes RUN_DIR/eval.json.

    The GGUF trained speaker is the merged export, or with `gguf_lora` the base GGUF + the exported GGUF LoRA
    applied at load time (what `rrg model add --lora` runs).
    """
    from trainer.export import read_run

    if not (hf or gguf):
        raise ValueError("nothing to evaluate: enable the HF or the GGUF backend")
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    cfg = run.get("config", {})
    root = data_root or cfg.get("data_root")
    cats = categories or cfg.get("categories")
    if not root or not cats:
        raise ValueError("no data_root/categories in the run's config: pass them")
    data = eval_data(Path(root), Path(cats), test_fraction=float(cfg.get("test_fraction", 0.2)),
                     seed=int(cfg.get("seed", 0)), k=k or int(cfg.get("K", 3)), all_concepts=all_concepts)  # fmt: skip
    columns: dict[str, dict] = {}
    if hf:
        backend = HFBackend(Path(run["base"]), run_dir / "adapter", max_tokens=max_tokens)
        columns.update(run_columns(backend, data, "hf "))
        del backend
    if gguf:
        from trainer.export import export_run

        export = run_dir / "export" / "manifest.json"
        weights = run_dir / "adapter" / "adapter_model.safetensors"
        stale = export.is_file() and weights.is_file() and weights.stat().st_mtime > export.stat().st_mtime
        if not export.is_file() or stale:  # missing, or older than the adapter (a resumed run)
            export_run(run_dir, quant=())
        files = json.loads(export.read_text())["files"]
        pair = base_gguf(run_dir, run)
        merged, lora = (None, Path(files["lora"]["path"])) if gguf_lora else (Path(files["text"]["path"]), None)
        backend = GGUFBackend.open(pair.text, pair.mmproj, merged, lora=lora, max_tokens=max_tokens,
                                   n_threads=n_threads)  # fmt: skip
        try:
            columns.update(run_columns(backend, data, "gguf "))
        finally:
            backend.close()
    result = {
        "run": str(run_dir),
        "concepts": sorted({e.concept for e in data.examples}),
        "n_photos": len(data.examples),
        "all_concepts": all_concepts,
        "columns": columns,
    }
    if write:
        (run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    return result
