"""The demo embedder's build: trains, exports an ONNX folder the product loads, and is deterministic."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from rrg_local.concepts.onnx_embedder import OnnxEmbedder  # noqa: E402
from rrg_local.demo.photo import render_photo  # noqa: E402
from rrg_local.vlm.protocol import ImageRef  # noqa: E402
from trainer import demo_embedder  # noqa: E402

SMALL = demo_embedder.EmbedderConfig(photos=96, held_out=24, steps=6, batch=16, widths=(8, 16, 16), log_every=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("embedder")
    return out, demo_embedder.build(SMALL, out, log=lambda _: None)


def test_build_writes_a_folder_the_product_loads(built):
    import random

    out, manifest = built
    folder = out / "embedder"
    assert manifest["config"] == json.loads(json.dumps(asdict(SMALL)))
    assert set(manifest["held_out_accuracy"]) == set(demo_embedder.HEADS)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]
    emb = OnnxEmbedder(folder)
    from rrg_local.demo.attributes import random_concept

    img, _ = render_photo([random_concept(random.Random(1))], "beach", random.Random(2), 224)
    raw = emb.run(emb.pixels(ImageRef(img))[None])[0]
    # One softmax per attribute head, concatenated: every block sums to one.
    sizes = list(demo_embedder.HEADS.values())
    assert raw.shape == (sum(sizes),)
    blocks = np.split(raw, np.cumsum(sizes)[:-1])
    assert np.allclose([b.sum() for b in blocks], 1.0, atol=1e-4) and (raw >= 0).all()
    assert abs(float(np.linalg.norm(emb.embed(ImageRef(img)))) - 1.0) < 1e-5


def test_the_build_is_deterministic(built, tmp_path):
    out, _ = built
    demo_embedder.build(SMALL, tmp_path, log=lambda _: None)

    def curve(run):  # every logged number but the elapsed seconds
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "s"} for r in rows]

    assert curve(out) == curve(tmp_path)
    pixels = np.random.default_rng(3).normal(size=(2, 3, SMALL.size, SMALL.size)).astype(np.float32)
    a, b = OnnxEmbedder(out / "embedder").run(pixels), OnnxEmbedder(tmp_path / "embedder").run(pixels)
    assert np.array_equal(a, b)


def test_ship_copies_the_folder_with_its_manifest(built, tmp_path):
    out, manifest = built
    dest = demo_embedder.ship(out, tmp_path / "shipped")
    assert json.loads((dest / "manifest.json").read_text()) == manifest
    OnnxEmbedder(dest)
