"""The doctests of the trainer package (pytest's testpaths collect doctests from rrg_local only)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import trainer

MODULES = sorted(m.name for m in pkgutil.walk_packages(trainer.__path__, "trainer."))


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


@pytest.mark.parametrize("script", ["rrg_effect.py", "rrg_pool.py", "comparison_testbed.py", "build_determinism.py"])
def test_bench_doctests(script):
    """The bench scripts' helpers that carry examples (imported as modules; their `main` does not run)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / script
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
