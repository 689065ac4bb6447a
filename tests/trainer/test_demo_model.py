"""Demo-model pre-training: answers are the only loss, runs resume exactly, and a few steps already learn."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from trainer import demo_model as dm  # noqa: E402
from trainer.demo_vision import VisionConfig  # noqa: E402
from trainer.tiny import TinyConfig  # noqa: E402

SMALL = TinyConfig(
    bpe_vocab=900, hidden_size=64, intermediate_size=128, num_layers=1, vision_embed_dim=32, vision_depth=1,
    vision_heads=2, min_pixels=56 * 56, max_pixels=56 * 56, tie_word_embeddings=True,
)  # fmt: skip


def small(**kw) -> dm.DemoConfig:
    base = dict(shape=SMALL, vision=VisionConfig(steps=2, batch=4),
                steps=6, batch=4, lr=3e-3, warmup=2, photo_size=96, threads=1, eval_every=1000,
                eval_size=4, checkpoint_every=1000, bf16=False)  # fmt: skip
    return dm.DemoConfig(**base | kw)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_only_answer_tokens_are_labelled(tmp_path):
    from transformers import AutoModelForImageTextToText

    config = small()
    init = dm.init_model(config, tmp_path)
    model = AutoModelForImageTextToText.from_pretrained(init)
    enc = dm.Encoder(init)
    samples = [dm.demo_tasks.BUILDERS[t](random.Random(i), size=96) for i, t in enumerate(dm.TASKS)]
    batch = enc(samples, model)
    for i, s in enumerate(samples):
        labelled = batch["labels"][i][batch["labels"][i] != -100].tolist()
        assert enc.tok.decode(labelled) == s.target + "<|im_end|>"
        ids = batch["inputs"]["input_ids"][i].tolist()
        if s.decision >= 0:  # the decision position is right before the option's first token
            pos = batch["decisions"][i]
            assert ids[pos + 1] == enc.ids(s.options[s.label])[0]
            assert enc.tok.decode(ids[: pos + 1]).endswith('"Answer": "')
    per_sample, logits = dm.answer_loss(model, batch)
    assert per_sample.shape == (len(samples),) and logits.shape[:2] == batch["labels"].shape


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    config = small()
    straight = dm.pretrain(config, tmp_path / "a", log=lambda _: None)
    assert dm.pretrain(config, tmp_path / "b", log=lambda _: None, stop_after=3) is None
    resumed = dm.pretrain(config, tmp_path / "b", log=lambda _: None)
    from safetensors.torch import load_file

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = dm.read_metrics(tmp_path / "b")
    assert [r["step"] for r in rows] == list(range(1, 7))
    # A finished phase (its model folder complete, e.g. brought back from a GPU machine) is not trained again.
    assert dm.pretrain(config, tmp_path / "b", log=lambda _: None) == resumed
    assert dm.read_metrics(tmp_path / "b") == rows and not (tmp_path / "b" / "hf.tmp").exists()
    with pytest.raises(ValueError, match="another config"):
        dm.pretrain(small(lr=1e-3), tmp_path / "b", log=lambda _: None)


def test_a_short_run_learns_the_description_format(tmp_path):
    config = small(
        steps=60, batch=8, mix_start=(1.0, 0.0, 0.0, 0.0), mix_end=(1.0, 0.0, 0.0, 0.0), eval_every=60,
        vision=VisionConfig(steps=0),
    )  # fmt: skip
    out = dm.pretrain(config, tmp_path, log=lambda _: None)
    rows = dm.read_metrics(tmp_path)
    early = sum(r["loss"] for r in rows[:5]) / 5
    late = sum(r["loss"] for r in rows[-5:]) / 5
    assert late < 0.5 * early
    assert rows[-1]["speaker_token_acc"] > 0.5  # the fixed wording of descriptions, at least
    assert (out / "tokenizer.json").exists() and (tmp_path / "checkpoint" / "state.pt").exists()


def test_stage_a_trains_on_a_bank_rendered_once_and_measures_fresh_photos(tmp_path, monkeypatch):
    import json

    from transformers import AutoModelForImageTextToText

    from trainer import demo_vision

    config = small()
    init = dm.init_model(config, tmp_path)
    enc = dm.Encoder(init)
    rendered = []
    real = demo_vision._render
    monkeypatch.setattr(demo_vision, "_render", lambda rng, size: rendered.append(size) or real(rng, size))
    vc = VisionConfig(steps=4, batch=3, bank=5, held_out=4, log_every=2)
    states = []
    for run in ("a", "b"):
        model = AutoModelForImageTextToText.from_pretrained(init)
        before = {k: v.clone() for k, v in model.model.visual.state_dict().items()}
        (tmp_path / run).mkdir()
        states.append(demo_vision.train_vision(model, enc.proc, vc, seed=0, photo_size=96, bf16=False,
                                               run_dir=tmp_path / run, log=lambda _: None))  # fmt: skip
    assert len(rendered) == 2 * (5 + 4)  # per run: the bank and the held-out photos, nothing per step
    assert all(torch.equal(states[0][k], states[1][k]) for k in before)  # seeded
    assert any(not torch.equal(states[0][k], before[k]) for k in before)  # and it trained
    rows = [json.loads(x) for x in (tmp_path / "a" / "vision_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert ["held_acc_pattern" in r for r in rows] == [False, True, False, True]
    assert all(0.0 <= r["held_acc_colour"] <= 1.0 for r in rows if "held_acc_colour" in r)


def test_stage_a_can_name_parts_by_category(tmp_path):
    import json

    from transformers import AutoModelForImageTextToText

    from trainer import demo_vision

    config = small()
    init = dm.init_model(config, tmp_path)
    enc = dm.Encoder(init)
    states = {}
    for by_category in (False, True):
        model = AutoModelForImageTextToText.from_pretrained(init)
        vc = VisionConfig(steps=2, batch=3, held_out=4, log_every=2, part_by_category=by_category)
        run = tmp_path / f"run-{by_category}"
        run.mkdir()
        states[by_category] = demo_vision.train_vision(model, enc.proc, vc, seed=0, photo_size=96, bf16=False,
                                                       run_dir=run, log=lambda _: None)  # fmt: skip
    rows = [json.loads(x) for x in (tmp_path / "run-True" / "vision_metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["acc_part"] <= 1.0 for r in rows) and 0.0 <= rows[-1]["held_acc_part"] <= 1.0
    # Same seed, same photos: only the part head's classes differ, and the tower learns something else.
    assert any(not torch.equal(states[False][k], states[True][k]) for k in states[False])
    with pytest.raises(ValueError, match="object_pool"):
        demo_vision.train_vision(model, enc.proc, VisionConfig(steps=1, part_by_category=True, object_pool=False),
                                 seed=0, photo_size=96, bf16=False, run_dir=tmp_path, log=lambda _: None)  # fmt: skip


def test_decision_apart_weighs_the_decision_the_same_whatever_the_answer_length(tmp_path):
    """Averaged with the answer's other tokens, a Yes whose description is also a target (~25 tokens) weighed
    far less than a bare No; apart, the per-sample loss is the other tokens' mean plus weight x the decision's."""
    import torch.nn.functional as F
    from transformers import AutoModelForImageTextToText

    init = dm.init_model(small(), tmp_path)
    model = AutoModelForImageTextToText.from_pretrained(init)
    enc = dm.Encoder(init)
    rng = random.Random(0)
    samples = [s for _ in range(3) for s in dm.demo_tasks.recognition_pairs(rng, size=96)]
    batch = enc(samples, model)
    mixed, logits = dm.answer_loss(model, batch, decision_weight=3.0)
    apart, _ = dm.answer_loss(model, batch, decision_weight=3.0, decision_apart=True)
    labels = batch["labels"][:, 1:]
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    ce = ce.view(labels.shape)
    for i, pos in enumerate(batch["decisions"]):
        mask = labels[i] != -100
        others = mask.clone()
        others[pos] = False
        rest = ce[i][others].mean()
        assert torch.allclose(apart[i], rest + 3.0 * ce[i, pos], atol=1e-5)
        assert torch.allclose(mixed[i], (ce[i][others].sum() + 3.0 * ce[i, pos]) / (others.sum() + 3.0), atol=1e-5)
    lengths = [int((labels[i] != -100).sum()) for i in range(len(samples))]
    assert max(lengths) > 3 * min(lengths)  # Yes samples carry their description as a target: the case it fixes


def test_a_warm_started_phase_with_another_seed_keeps_the_tokenizer_it_starts_from(tmp_path):
    first = dm.pretrain(small(steps=2), tmp_path / "a", log=lambda _: None)
    phase = small(steps=1, seed=1, warm_start=str(first), vision=VisionConfig(steps=0))
    out = dm.pretrain(phase, tmp_path / "b", log=lambda _: None)
    text = "The red mug has blue stripes, a square blue handle and a star mark."
    assert dm.Encoder(out).ids(text) == dm.Encoder(first).ids(text)
    fresh = dm.init_model(small(seed=1), tmp_path / "c")  # what the phase used to tokenize with
    assert dm.Encoder(fresh).ids(text) != dm.Encoder(first).ids(text)
    # Its curves: the two stage-B panels, not an empty stage-A one beside them (the first phase has all three).
    pytest.importorskip("matplotlib")
    from PIL import Image

    panels = {run: Image.open(tmp_path / run / "curves.png").width for run in ("a", "b")}
    assert panels["b"] < 0.75 * panels["a"], panels


def test_answer_logliks_are_the_summed_log_probability_of_each_answer(tmp_path):
    """The caption probe's score, per sample, equals the model's own mean answer loss times the answer's length
    (a shift or a padding mistake would not), and a longer answer of the same photo scores lower."""
    from transformers import AutoModelForImageTextToText

    init = dm.init_model(small(), tmp_path)
    model = AutoModelForImageTextToText.from_pretrained(init)
    enc = dm.Encoder(init)
    rng = random.Random(4)
    samples = [dm.demo_tasks.speaker_sample(rng, size=96) for _ in range(3)]
    batched = dm.answer_logliks(model, enc, samples, batch_size=3)
    for sample, got in zip(samples, batched, strict=True):
        batch = enc([sample], model)
        with torch.no_grad():
            loss = model(**batch["inputs"], labels=batch["labels"]).loss
        n = int((batch["labels"][:, 1:] != -100).sum())
        assert got == pytest.approx(-float(loss) * n, rel=1e-4)
    short = samples[0]
    longer = dm.demo_tasks.Sample(short.task, short.messages, short.image, (*short.segments, " And more words."))
    assert dm.answer_logliks(model, enc, [longer])[0] < batched[0]


def test_open_hf_loads_a_build_folder_and_names_a_wrong_one(tmp_path):
    init = dm.init_model(small(), tmp_path / "run")
    model, enc = dm.open_hf(init, threads=1)
    assert model.config.text_config.hidden_size == SMALL.hidden_size and enc.ids("mug")
    with pytest.raises(ValueError, match="not an HF model folder"):
        dm.open_hf(tmp_path)


def test_stage_b_with_workers_trains_the_same_whatever_their_number_and_resumes(tmp_path):
    from safetensors.torch import load_file

    def weights(folder):
        return load_file(folder / "model.safetensors")

    def run(name: str, stop_after: int | None = None, **kw):
        config = small(vision=VisionConfig(steps=0), steps=5, batch=3, **kw)
        return dm.pretrain(config, tmp_path / name, log=lambda _: None, stop_after=stop_after)

    one = run("one", workers=1)
    assert run("two", stop_after=2, workers=2) is None
    two = run("two", workers=2)  # resumed at step 2
    here = run("here")  # one stream: other samples
    a, b, c = weights(one), weights(two), weights(here)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_stage_a_with_workers_trains_the_same_whatever_their_number(tmp_path):
    from transformers import AutoModelForImageTextToText

    from trainer import demo_vision

    init = dm.init_model(small(), tmp_path)
    proc = dm.Encoder(init).proc
    states = {}
    for workers in (0, 1, 2):
        model = AutoModelForImageTextToText.from_pretrained(init)
        run = tmp_path / f"w{workers}"
        run.mkdir()
        vc = VisionConfig(steps=3, batch=3, workers=workers, held_out=4, log_every=3)
        states[workers] = demo_vision.train_vision(model, proc, vc, seed=0, photo_size=96, bf16=False, run_dir=run,
                                                   log=lambda _: None)  # fmt: skip
    assert all(torch.equal(states[1][k], states[2][k]) for k in states[1])
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])  # workers draw other photos
    assert (tmp_path / "w2" / "vision_metrics.jsonl").read_text().count("held_acc_part") == 1


def test_stage_a_trains_with_its_own_thread_count_and_gives_the_callers_back(tmp_path):
    from transformers import AutoModelForImageTextToText

    from trainer import demo_vision

    init = dm.init_model(small(), tmp_path)
    torch.set_num_threads(2)
    seen = []
    vc = VisionConfig(steps=2, batch=2, threads=1, log_every=1)
    model, proc = AutoModelForImageTextToText.from_pretrained(init), dm.Encoder(init).proc
    demo_vision.train_vision(model, proc, vc, seed=0, photo_size=96, bf16=False, run_dir=tmp_path,
                             log=lambda _: seen.append(torch.get_num_threads()))  # fmt: skip
    assert seen == [1, 1] and torch.get_num_threads() == 2


def test_word_checks_are_read_at_the_described_words_and_add_their_mean(tmp_path):
    """Each checked word's position holds that word's last token; a look-alike pair differs in exactly the
    checks of the changed attribute; `match_weight` adds weight x the mean check cross-entropy to recognition
    samples and nothing to others; `match_false_weight` counts a false word's check that many times in the mean."""
    import torch.nn.functional as F
    from transformers import AutoModelForImageTextToText

    init = dm.init_model(small(), tmp_path)
    model = AutoModelForImageTextToText.from_pretrained(init)
    enc = dm.Encoder(init)
    rng = random.Random(1)
    samples = [s for _ in range(4) for s in dm.demo_tasks.recognition_pairs(rng, size=96, hard=1.0)]
    samples.append(dm.demo_tasks.speaker_sample(rng, size=96))
    batch = enc(samples, model)
    for i, s in enumerate(samples[:-1]):
        ids = batch["inputs"]["input_ids"][i].tolist()
        assert len(batch["checks"][i]) == len(s.checks) > 0
        for (pos, ok), (a, b, ok_word) in zip(batch["checks"][i], s.checks, strict=True):
            token = enc.tok.decode([ids[pos]]).strip()
            assert token and s.checks_text[a:b].endswith(token) and ok == ok_word
        assert all(ok for _, ok in batch["checks"][i]) == (s.label == 0)  # a No has a false word, a Yes none
    assert batch["checks"][-1] == []
    plain, _ = dm.answer_loss(model, batch)
    checked, _ = dm.answer_loss(model, batch, match_weight=2.0, match_layer=1)
    logits, _, hidden = dm.forward(model, batch, bf16=False, hidden=True)
    check, target, rows = dm.check_logits(model, batch, hidden, 1)
    ce = F.cross_entropy(check, target, reduction="none")
    for i in range(len(samples)):
        mine = [c for c, r in zip(ce, rows, strict=True) if r == i]
        extra = 2.0 * torch.stack(mine).mean() if mine else torch.tensor(0.0)
        assert torch.allclose(checked[i], plain[i] + extra, atol=1e-5)
    assert checked[-1] == plain[-1]
    leaning, _ = dm.answer_loss(model, batch, match_weight=2.0, match_layer=1, match_false_weight=5.0)
    for i in range(len(samples) - 1):
        mine = [(c, 5.0 if t else 1.0) for c, t, r in zip(ce, target.tolist(), rows, strict=True) if r == i]
        extra = 2.0 * sum(c * w for c, w in mine) / sum(w for _, w in mine)
        assert torch.allclose(leaning[i], plain[i] + extra, atol=1e-5)
        assert (samples[i].label == 1) == (not torch.allclose(leaning[i], checked[i], atol=1e-6))


def test_speaker_casual_is_the_share_of_casual_descriptions_the_speaker_learns():
    from rrg_local.vlm.prompts import parse_description

    def casual_share(p: float) -> float:
        config = small(batch=80, photo_size=64, mix_start=(1, 0, 0, 0), mix_end=(1, 0, 0, 0), speaker_casual=p)
        batch = dm.draw_batch(random.Random(0), config, 0)
        assert {s.task for s in batch} == {"speaker"}
        # A complete description ends with its mark; a casual one with the scene or the pose.
        return sum(not parse_description(s.target)[1].endswith("mark.") for s in batch) / len(batch)

    assert casual_share(0.0) == 0.0 and casual_share(1.0) == 1.0
    assert 0.3 < casual_share(0.5) < 0.7 < casual_share(0.9)


def test_bf16_autocast_runs_only_where_the_cpu_computes_bf16(tmp_path, monkeypatch):
    # Emulated bf16 (no bf16 instructions, or oneDNN capped below them) ran a short build 1.5-7.6x slower than f32:
    # there the build trains in f32, says so, and makes the f32 run's weights.
    from safetensors.torch import load_file

    from trainer.hardware import native_bf16

    def weights(run):
        return load_file(run / "hf" / "model.safetensors")

    said = []
    f32 = dm.pretrain(small(steps=2, bf16=False), tmp_path / "f32", log=lambda _: None).parent
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not native_bf16("cpu")
    capped = dm.pretrain(small(steps=2, bf16=True), tmp_path / "capped", log=said.append).parent
    assert any(line.startswith("f32: no bf16 instructions") for line in said)
    assert all(torch.equal(a, weights(capped)[k]) for k, a in weights(f32).items())
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    if native_bf16("cpu"):  # this CPU has bf16 instructions: the autocast runs, and rounds otherwise
        said.clear()
        fast = dm.pretrain(small(steps=2, bf16=True), tmp_path / "bf16", log=said.append).parent
        assert not any(line.startswith("f32:") for line in said)
        assert not all(torch.equal(a, weights(fast)[k]) for k, a in weights(f32).items())


def test_checkpoints_leave_no_progress_bar_in_the_log_and_bars_elsewhere_stay_on(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    bars = []
    for steps in (2, 5):  # a checkpoint every step: 3 more checkpoints, no more bars (the model's own saves keep one)
        run = tmp_path / f"run{steps}"
        dm.pretrain(small(vision=VisionConfig(steps=0), steps=steps, checkpoint_every=1), run, log=lambda _: None)
        assert (run / "checkpoint" / "state.pt").exists()
        bars.append(capfd.readouterr().err.count("Writing model shards: 100%"))
    assert bars[0] == bars[1]
    assert hf_logging.is_progress_bar_enabled()


def test_a_compiled_stage_b_trains_as_the_eager_one_and_saves_the_same_weights(tmp_path):
    """`compile`: the language model through inductor, in place: the same losses and weights up to rounding,
    under the same names (a model folder that loads without the compiled wrapper's `_orig_mod.` prefixes)."""
    from safetensors.torch import load_file
    from torch._dynamo.utils import counters

    def run(name: str, **kw):
        config = small(vision=VisionConfig(steps=0), steps=2, batch=3, **kw)
        return dm.pretrain(config, tmp_path / name, log=lambda _: None), dm.read_metrics(tmp_path / name)

    counters.clear()
    eager, eager_rows = run("eager")
    assert not counters["stats"]["unique_graphs"]
    compiled, compiled_rows = run("compiled", compile=True)
    assert counters["stats"]["unique_graphs"] > 0  # inductor did compile the forward
    a, b = load_file(eager / "model.safetensors"), load_file(compiled / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    assert [r["loss"] for r in eager_rows] == pytest.approx([r["loss"] for r in compiled_rows], abs=1e-3)


def test_length_batches_cut_by_token_count_and_keep_every_samples_loss(tmp_path):
    """`Encoder.batches`: each sample lands in one batch with its own photo and labels (its loss as in the
    single batch, up to rounding), the batches run shortest first, and they hold fewer pad tokens than the
    single batch; a stage-B run so trains as the task-sorted one up to rounding."""
    from transformers import AutoModelForImageTextToText

    config = small()
    init = dm.init_model(config, tmp_path / "init")
    model = AutoModelForImageTextToText.from_pretrained(init, dtype=torch.float32)
    enc = dm.Encoder(init)
    samples = dm.draw_batch(random.Random(3), small(batch=12), step=3)
    whole = enc(samples, model)
    full, _ = dm.answer_loss(model, whole)
    batches = enc.batches(samples, model, 3)
    assert [len(b["decisions"]) for b in batches] == [4, 4, 4]
    widths = [b["inputs"]["attention_mask"].shape[1] for b in batches]
    lengths = [b["inputs"]["attention_mask"].sum(1).tolist() for b in batches]
    assert widths == sorted(widths) and all(max(a) <= min(b) for a, b in zip(lengths, lengths[1:], strict=False))
    assert sum(b["inputs"]["attention_mask"].numel() for b in batches) < whole["inputs"]["attention_mask"].numel()
    mine = sorted(float(x) for b in batches for x in dm.answer_loss(model, b)[0].detach())
    assert mine == pytest.approx(sorted(float(x) for x in full.detach()), abs=1e-4)
    # a batch's photos are its own samples' (a mix-up would change the losses above only a little)
    by_ids = {tuple(r[r != enc.pad].tolist()): i for i, r in enumerate(whole["inputs"]["input_ids"])}
    for b in batches:
        for row, (ids, thw) in enumerate(zip(b["inputs"]["input_ids"], b["inputs"]["image_grid_thw"], strict=True)):
            i = by_ids[tuple(ids[ids != enc.pad].tolist())]
            assert torch.equal(thw, whole["inputs"]["image_grid_thw"][i])
            n, at = int(thw.prod()), int(whole["inputs"]["image_grid_thw"][:i].prod(-1).sum())
            mine_px = b["inputs"]["pixel_values"][int(b["inputs"]["image_grid_thw"][:row].prod(-1).sum()) :][:n]
            assert torch.equal(mine_px, whole["inputs"]["pixel_values"][at : at + n])

    def run(name: str, **kw):
        cfg = small(vision=VisionConfig(steps=0), steps=2, batch=6, micro_batches=3, **kw)
        dm.pretrain(cfg, tmp_path / name, log=lambda _: None)
        return [r["loss"] for r in dm.read_metrics(tmp_path / name)]

    assert run("by-length", length_batches=True) == pytest.approx(run("by-task"), abs=1e-4)
