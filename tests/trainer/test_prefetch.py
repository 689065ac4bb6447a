"""Batches made by worker processes: the same sequence for any number of workers, and failures say why
(training on them: `test_demo_model.py`)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from trainer import demo_model as dm  # noqa: E402
from trainer.prefetch import Prefetcher, PrefetchError  # noqa: E402


def small(**kw) -> dm.DemoConfig:
    """Only batches are drawn here (no model): steps, batch and photo size matter."""
    return dm.DemoConfig(**dict(steps=5, batch=3, photo_size=96) | kw)


def fingerprint(batch) -> list:
    return [(s.task, s.target, s.image.tobytes()) for s in batch]


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
