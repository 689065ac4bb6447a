"""Batches made by worker processes: the same sequence for any number of workers, and failures say why."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from trainer import demo_model as dm  # noqa: E402
from trainer.demo_vision import VisionConfig  # noqa: E402
from trainer.prefetch import Prefetcher, PrefetchError  # noqa: E402
from trainer.tiny import TinyConfig  # noqa: E402

SMALL = TinyConfig(
    bpe_vocab=900, hidden_size=64, intermediate_size=128, num_layers=1, vision_embed_dim=32, vision_depth=1,
    vision_heads=2, min_pixels=56 * 56, max_pixels=56 * 56, tie_word_embeddings=True,
)  # fmt: skip


def small(**kw) -> dm.DemoConfig:
    base = dict(shape=SMALL, vision=VisionConfig(steps=0), steps=5, batch=3, lr=3e-3, warmup=2, photo_size=96,
                threads=1, eval_every=1000, eval_size=2, checkpoint_every=1000, bf16=False)  # fmt: skip
    return dm.DemoConfig(**base | kw)


def fingerprint(batch) -> list:
    return [(s.task, s.target, s.image.tobytes()) for s in batch]


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_any_number_of_workers_makes_the_same_batches_in_order():
    config = small()
    here = [fingerprint(b) for b in dm.step_batches(config, 1)]
    assert len(here) == 4 and here[0] != here[1]  # steps 1-4, each its own draw
    for workers in (1, 3):
        with Prefetcher(dm.step_batches, config, 1, workers=workers) as batches:
            assert [fingerprint(b) for b in batches] == here


def test_a_failing_worker_raises_with_its_error_and_a_bad_count_is_refused():
    with Prefetcher(dm.step_batches, small(photo_size=10), 0, workers=2) as batches:
        with pytest.raises(PrefetchError, match="below 64 px"):
            next(batches)
        with pytest.raises(StopIteration):
            next(batches)
    with pytest.raises(ValueError, match="at least 1"):
        Prefetcher(dm.step_batches, small(), 0, workers=0)


def test_leaving_early_stops_the_workers():
    with Prefetcher(dm.step_batches, small(steps=10_000), 0, workers=2) as batches:
        next(batches)
        procs = list(batches._procs)
    assert not any(p.is_alive() for p in procs)


def test_stage_b_with_workers_trains_the_same_whatever_their_number_and_resumes(tmp_path):
    from safetensors.torch import load_file

    def weights(folder):
        return load_file(folder / "model.safetensors")

    one = dm.pretrain(small(workers=1), tmp_path / "one", log=lambda _: None)
    assert dm.pretrain(small(workers=2), tmp_path / "two", log=lambda _: None, stop_after=2) is None
    two = dm.pretrain(small(workers=2), tmp_path / "two", log=lambda _: None)  # resumed at step 2
    here = dm.pretrain(small(), tmp_path / "here", log=lambda _: None)  # one stream: other samples
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
