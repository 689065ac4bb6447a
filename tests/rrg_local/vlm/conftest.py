"""Fixtures for runtime tests: the tiny Qwen2-VL that the project builds and converts itself (cached)."""

from __future__ import annotations

import pytest

from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel


@pytest.fixture(scope="session")
def tiny():
    from trainer.tiny import tiny_gguf

    return tiny_gguf()


@pytest.fixture(scope="session")
def tiny_config(tiny) -> LlamaConfig:
    pair = tiny.pair("f16")
    return LlamaConfig(model=pair.text, mmproj=pair.mmproj, n_ctx=2048, n_threads=1, image_max_tokens=None)


@pytest.fixture
def model(tiny_config):
    with LlamaVisionModel(tiny_config) as m:
        yield m


@pytest.fixture
def plain(tiny_config):
    """The same model on the plain path: no KV reuse, every image encoded again."""
    with LlamaVisionModel(tiny_config, cache=False) as m:
        yield m
