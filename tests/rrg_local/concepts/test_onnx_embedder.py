"""The ONNX stage-1 embedder on tiny random CLIP and SigLIP towers that `trainer.tiny_clip` builds and exports.

The models are cached (~/.cache/rrg-local/tiny-clip-*): a cold run builds and exports two (about 20 s on two
cores), a warm one only loads them.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from rrg_local.concepts.embeddings import EmbeddingStore
from rrg_local.concepts.onnx_embedder import MODEL_FILE, SPEC_FILE, OnnxEmbedder, OnnxEmbedderError
from rrg_local.library.scan import Scanner
from rrg_local.vlm.protocol import ImageRef, VisionError
from tests.conftest import draw_photo, exif_bytes

PARITY_ATOL = 1e-5  # onnxruntime vs torch on the same input, float32 (measured: about 1e-6)


def jpeg(img: Image.Image, quality: int = 90, orientation: int = 1) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, exif=exif_bytes(orientation=orientation))
    return buf.getvalue()


@pytest.fixture(scope="session")
def clip_dir():
    from trainer.tiny_clip import tiny_clip

    return tiny_clip()


@pytest.fixture(scope="session")
def siglip_dir():
    from trainer.tiny_clip import SIZES, tiny_clip

    return tiny_clip(SIZES["siglip"])


@pytest.fixture
def embedder(clip_dir):
    return OnnxEmbedder(clip_dir, threads=1)


def test_tiny_model_is_built_once_and_cached(clip_dir, monkeypatch):
    import trainer.tiny_clip as tc

    assert {MODEL_FILE, SPEC_FILE, "hf", "export.json"} <= {p.name for p in clip_dir.iterdir()}

    def refuse(entry, config):
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(tc, "_build_entry", refuse)
    assert tc.tiny_clip() == clip_dir
    first, second = OnnxEmbedder(clip_dir, threads=1), OnnxEmbedder(clip_dir, threads=1)
    assert first.name == second.name
    assert first.name.startswith(f"onnx:{clip_dir.name}:") and len(first.name.rsplit(":", 1)[1]) == 8


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_onnx_matches_torch_on_the_same_preprocessed_input(family, clip_dir, siglip_dir):
    import torch

    from trainer.tiny_clip import load_vision

    model_dir = clip_dir if family == "clip" else siglip_dir
    emb = OnnxEmbedder(model_dir, threads=1)
    assert emb.spec.family == family
    pixels = np.stack([emb.pixels(ImageRef(draw_photo(seed))) for seed in range(3)])
    module, _ = load_vision(model_dir / "hf")
    with torch.no_grad():
        want = module(torch.from_numpy(pixels)).numpy()
    got = emb.run(pixels)
    assert got.shape == want.shape == (3, emb.spec.embedding_dim)
    np.testing.assert_allclose(got, want, rtol=0, atol=PARITY_ATOL)


def test_siglip_preprocessing_follows_its_config(siglip_dir):
    spec = OnnxEmbedder(siglip_dir, threads=1).spec
    assert (spec.crop, spec.mean, spec.output_name) == ("squash", (0.5, 0.5, 0.5), "pooler_output")


def test_vectors_are_unit_float32_and_batching_agrees(embedder):
    refs = [ImageRef(jpeg(draw_photo(seed))) for seed in range(5)]
    many = embedder.embed_many(refs)
    assert many.dtype == np.float32 and many.shape == (5, embedder.spec.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-6)
    one = embedder.embed(refs[3])
    assert one.dtype == np.float32 and one.shape == (embedder.spec.embedding_dim,)
    np.testing.assert_allclose(one, many[3], atol=1e-6)
    assert embedder.embed_many([]).shape == (0, embedder.spec.embedding_dim)


def test_identical_images_give_identical_vectors(embedder, tmp_path):
    data = jpeg(draw_photo(7))
    (tmp_path / "a.jpg").write_bytes(data)
    (tmp_path / "b.jpg").write_bytes(data)
    a, b, c = (embedder.embed(ImageRef(src)) for src in (tmp_path / "a.jpg", str(tmp_path / "b.jpg"), data))
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_exif_orientation_is_applied(embedder):
    upright = draw_photo(8)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes with orientation 6
    fixed = embedder.embed(ImageRef(jpeg(stored, orientation=6)))
    assert float(fixed @ embedder.embed(ImageRef(jpeg(upright)))) > 0.999
    assert not np.allclose(fixed, embedder.embed(ImageRef(jpeg(stored))), atol=1e-3)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_a_resized_reencoded_copy_finds_its_original(family, clip_dir, siglip_dir):
    # Random weights still make the map smooth in its input: a near copy's pixels, hence its vector, stay close
    # (cosine >= 0.999 measured), while different pictures land apart (<= 0.99). Measured over seeds 0-2.
    emb = OnnxEmbedder(clip_dir if family == "clip" else siglip_dir, threads=1)
    originals = [draw_photo(100 + i, (224, 168)) for i in range(5)]
    unrelated = [draw_photo(300 + i, (224, 168)) for i in range(5)]
    bank = emb.embed_many([ImageRef(jpeg(img)) for img in originals + unrelated])
    copies = emb.embed_many(
        [ImageRef(jpeg(img.resize((200, 150), Image.Resampling.LANCZOS), 70)) for img in originals]
    )
    sims = copies @ bank.T
    assert sims.argmax(axis=1).tolist() == [0, 1, 2, 3, 4]
    others = np.where(np.eye(5, 10, dtype=bool), -np.inf, sims).max(axis=1)
    assert (np.diag(sims) - others).min() > 0.005
    # and the embedder does tell different pictures apart (a constant output would pass the argmax by luck)
    assert (bank @ bank.T)[np.triu_indices(10, 1)].max() < 0.995


def test_undecodable_image_raises_one_clear_error(embedder, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(OnnxEmbedderError, match="bad.jpg") as info:
        embedder.embed(ImageRef(bad))
    assert isinstance(info.value, VisionError)
    with pytest.raises(OnnxEmbedderError, match="not found"):
        embedder.embed(ImageRef(tmp_path / "gone.jpg"))
    with pytest.raises(OnnxEmbedderError):
        embedder.embed_many([ImageRef(jpeg(draw_photo(1))), ImageRef(b"junk")])


def test_missing_or_corrupt_model_raises_one_clear_error(clip_dir, tmp_path):
    with pytest.raises(OnnxEmbedderError, match=f"{SPEC_FILE} is missing"):
        OnnxEmbedder(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(clip_dir / SPEC_FILE, broken / SPEC_FILE)
    with pytest.raises(OnnxEmbedderError, match=f"{MODEL_FILE} is missing"):
        OnnxEmbedder(broken)
    (broken / MODEL_FILE).write_bytes(b"\x08\x07 not a protobuf model" * 10)
    with pytest.raises(OnnxEmbedderError, match="corrupt or unsupported model"):
        OnnxEmbedder(broken)
    (broken / SPEC_FILE).write_text("{not json")
    with pytest.raises(OnnxEmbedderError, match="unusable"):
        OnnxEmbedder(broken)


def test_spec_that_does_not_match_the_model_is_refused(clip_dir, tmp_path):
    from dataclasses import replace

    from rrg_local.concepts.onnx_embedder import load_spec

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(clip_dir / MODEL_FILE, other / MODEL_FILE)
    (other / SPEC_FILE).write_text(replace(load_spec(clip_dir), embedding_dim=7).to_json())
    with pytest.raises(OnnxEmbedderError, match="image_embeds of 7"):
        OnnxEmbedder(other)


def test_export_hf_writes_a_new_folder_with_the_same_model(clip_dir, tmp_path, embedder):
    from trainer.tiny_clip import export_hf

    result = export_hf(clip_dir / "hf", tmp_path / "exported")
    assert result.model_dir == tmp_path / "exported" and result.max_abs_diff <= PARITY_ATOL
    again = OnnxEmbedder(result.model_dir, threads=1)
    ref = ImageRef(jpeg(draw_photo(3)))
    np.testing.assert_allclose(again.embed(ref), embedder.embed(ref), atol=1e-6)
    with pytest.raises(FileExistsError):
        export_hf(clip_dir / "hf", tmp_path / "exported")


def test_plugs_into_the_embedding_store(embedder, db, settings, make_jpeg, tmp_path):
    for seed in range(4):
        make_jpeg(tmp_path / "lib" / f"p{seed}.jpg", seed)
    Scanner(db, settings).scan([tmp_path / "lib"])
    store = EmbeddingStore(db, embedder, settings.thumbs_dir)
    assert store.run_jobs() == 4
    rows = db.execute("SELECT embedder, count(*) FROM embeddings GROUP BY embedder").fetchall()
    assert rows == [(embedder.name, 4)]
    ids, bank = store.all_vectors()
    assert bank.shape == (4, embedder.spec.embedding_dim)
    np.testing.assert_allclose(bank[0], embedder.embed(store.image(ids[0])), atol=1e-6)

    class Refusing:
        name = embedder.name

        def embed(self, image):
            raise AssertionError("recomputed a cached vector")

    cached = EmbeddingStore(db, Refusing(), settings.thumbs_dir).many(ids)
    np.testing.assert_array_equal(np.stack([cached[i] for i in ids]), bank)
