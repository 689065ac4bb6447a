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
