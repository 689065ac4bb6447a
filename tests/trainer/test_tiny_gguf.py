"""The tiny Qwen2-VL builder and its GGUF export: model, tokenizer, template, conversion, quantization, parity, cache.

Needs llama.cpp's converter in the build cache (`rrg-train fetch-converter`, run by `make` during set-up); the
tiny model itself is built on first use (about 6 s) and cached across runs.
"""

from __future__ import annotations

import ctypes
import io
import json
import tarfile
import time
from dataclasses import asdict, replace

import numpy as np
import pytest

from tests.conftest import draw_photo
from trainer import cache, gguf
from trainer.tiny import CACHE_NAME, TinyConfig, tiny_cache_parts, tiny_gguf
from trainer.tiny_tokenizer import SPECIAL_TOKENS

PROMPT = "Is Bo in this photo? Answer Yes or No."
VISION = "<|vision_start|><|image_pad|><|vision_end|>"
# Last-token logit tolerances against transformers (f32 reference). The tiny model's logits have a std of
# about 0.16; llama.cpp's CPU kernels land about 7e-4 away even from an f32 GGUF (5e-4 on text alone), so
# f32 and f16 share one bound.
TOLERANCE = {"f32": 2e-3, "f16": 2e-3, "Q8_0": 2e-2, "Q4_K_M": 0.1}


@pytest.fixture(scope="module")
def tiny():
    return tiny_gguf(quant=("Q8_0", "Q4_K_M"))


@pytest.fixture(scope="module")
def hf(tiny):
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLForConditionalGeneration

    torch.set_num_threads(1)
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny.hf_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny.hf_dir), AutoImageProcessor.from_pretrained(tiny.hf_dir)


@pytest.fixture(scope="module")
def photo_png() -> bytes:
    # 112 x 112 is a multiple of 28 inside [min_pixels, max_pixels]: neither side resizes (16 image tokens).
    buf = io.BytesIO()
    draw_photo(3, (112, 112)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def reference(hf, photo_png):
    return transformers_last_logits(hf, photo_png)


def transformers_last_logits(hf, photo_png: bytes) -> tuple[str, list[int], np.ndarray]:
    """transformers' prompt, token ids (image tokens as -1) and last-token logits for the image + PROMPT."""
    import torch
    from PIL import Image

    model, tok, proc = hf
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = proc(images=[Image.open(io.BytesIO(photo_png))], return_tensors="pt")
    n_image = int(image["image_grid_thw"].prod()) // model.config.vision_config.spatial_merge_size**2
    ids = tok(prompt.replace("<|image_pad|>", "<|image_pad|>" * n_image), return_tensors="pt").input_ids
    is_image = ids == model.config.image_token_id
    with torch.no_grad():
        out = model(input_ids=ids, mm_token_type_ids=is_image.long(), **image)
    flat = [-1 if img else int(t) for t, img in zip(ids[0], is_image[0], strict=True)]
    return prompt, flat, out.logits[0, -1].numpy()


def gguf_last_logits(
    pair: gguf.GGUFPair, prompt: str, png: bytes, image_max_tokens: int = -1
) -> tuple[list[int], np.ndarray]:
    """llama.cpp's token ids (image positions as -1) and last-token logits, through the low-level mtmd API."""
    import llama_cpp
    from llama_cpp import mtmd_cpp as mtmd

    llm = llama_cpp.Llama(str(pair.text), n_ctx=256, n_batch=256, n_threads=1, flash_attn=True, verbose=False)
    params = mtmd.mtmd_context_params_default()
    params.use_gpu, params.n_threads, params.warmup, params.print_timings = False, 1, False, False
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    params.image_max_tokens = image_max_tokens
    ctx = mtmd.mtmd_init_from_file(str(pair.mmproj).encode(), llm.model, params)
    assert ctx, f"mtmd could not load {pair.mmproj}"
    bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(
        ctx, (ctypes.c_uint8 * len(png)).from_buffer_copy(png), len(png), False
    )
    chunks = mtmd.mtmd_input_chunks_init()
    try:
        text = mtmd.mtmd_input_text()
        raw = prompt.replace(VISION, mtmd.mtmd_default_marker().decode()).encode()
        text.text, text.text_len, text.add_special, text.parse_special = raw, len(raw), True, True
        assert mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(text), (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap), 1) == 0
        ids: list[int] = []
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                toks = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                ids += [toks[j] for j in range(n.value)]
            else:
                ids += [-1] * mtmd.mtmd_input_chunk_get_n_tokens(chunk)
        n_past = llama_cpp.llama_pos(0)
        assert mtmd.mtmd_helper_eval_chunks(ctx, llm.ctx, chunks, 0, 0, 256, True, ctypes.byref(n_past)) == 0
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()
    finally:
        mtmd.mtmd_input_chunks_free(chunks)
        mtmd.mtmd_bitmap_free(bitmap)
        mtmd.mtmd_free(ctx)
        llm.close()
    return ids, logits


def same_top_k(ref: np.ndarray, got: np.ndarray, k: int, tol: float) -> bool:
    """Same top-k set, allowing swaps across the k-th boundary only between near-ties (within `tol`)."""
    top_ref, top_got = set(np.argsort(-ref)[:k]), set(np.argsort(-got)[:k])
    kth = np.sort(ref)[-k]
    return all(abs(ref[t] - kth) <= tol for t in top_ref ^ top_got)


def test_tiny_model_is_small_complete_and_consistent(tiny, hf):
    model, tok, proc = hf
    names = {p.name for p in tiny.hf_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert sum(p.numel() for p in model.parameters()) < 3_000_000
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert list(ids.values()) == list(range(ids["<|endoftext|>"], ids["<|endoftext|>"] + len(SPECIAL_TOKENS)))
    cfg = model.config
    assert (cfg.image_token_id, cfg.video_token_id) == (ids["<|image_pad|>"], ids["<|video_pad|>"])
    assert (cfg.vision_start_token_id, cfg.vision_end_token_id) == (ids["<|vision_start|>"], ids["<|vision_end|>"])
    assert cfg.text_config.vocab_size == len(tok) and tok.eos_token == "<|im_end|>"
    assert proc.image_mean and proc.image_std


def test_tokenizer_round_trips_and_template_renders_images(hf):
    _, tok, _ = hf
    for text in [
        '{"Answer": "Yes", "Reasoning": "A fluffy dog."}',
        "café 🐶 déjà vu\n\tx",
        "<|im_start|>user\nB<|im_end|>",
    ]:
        assert tok.decode(tok(text).input_ids) == text
    assert len(tok("Yes").input_ids) == 1 and len(tok(" photo").input_ids) == 1
    url = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    for part in ({"type": "image"}, url):
        messages = [{"role": "user", "content": [part, {"type": "text", "text": PROMPT}]}]
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert text == (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            f"<|im_start|>user\n{VISION}{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
        )


def test_gguf_tokenizer_matches_transformers(tiny, hf):
    import llama_cpp

    _, tok, _ = hf
    llm = llama_cpp.Llama(str(tiny.text["f16"]), vocab_only=True, verbose=False)
    try:
        for text in (
            '{"Answer": "No", "Reasoning": "The dog\'s ear is 3.5 cm."}',
            "I'll  go\n\n  there   3333 'RE you sure? 'M not",
            "café 🐶 Ünïcödé ΑΒΓ 漢字\t\tx  ",
            "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n",
        ):
            assert llm.tokenize(text.encode(), add_bos=True, special=True) == tok(text).input_ids, text
    finally:
        llm.close()


def test_doctests_in_builder_modules():
    import doctest

    from trainer import cache as cache_module
    from trainer import tiny as tiny_module

    for module in (cache_module, tiny_module):
        assert doctest.testmod(module).failed == 0


def test_random_model_emits_text_when_sampled(hf):
    import torch

    model, tok, _ = hf
    ids = tok("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt").input_ids
    torch.manual_seed(0)
    vision = [model.config.image_token_id, model.config.video_token_id, model.config.vision_start_token_id]
    out = model.generate(ids, do_sample=True, max_new_tokens=12, suppress_tokens=vision, pad_token_id=tok.pad_token_id)
    assert tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def test_conversion_and_quantization_outputs(tiny):
    for files in (tiny.text, tiny.mmproj):
        for path in files.values():
            assert path.read_bytes()[:4] == b"GGUF", path
    size = {k: p.stat().st_size for k, p in tiny.text.items()}
    assert size["f32"] > size["f16"] > size["Q8_0"] > size["Q4_K_M"]
    mm = {k: p.stat().st_size for k, p in tiny.mmproj.items()}
    assert mm["f32"] > mm["f16"] > mm["Q8_0"]
    assert tiny.pair("Q4_K_M").mmproj == tiny.mmproj["f16"] and tiny.pair("f32").mmproj == tiny.mmproj["f32"]
    with pytest.raises(KeyError, match="Q6_K"):
        tiny.pair("Q6_K")


@pytest.mark.parametrize(
    ("text", "mmproj", "top_k"),
    [("f32", "f32", 5), ("f16", "f16", 5), ("Q8_0", "Q8_0", 5), ("Q4_K_M", "f16", 1)],
)
def test_gguf_logits_match_transformers(tiny, reference, photo_png, text, mmproj, top_k):
    prompt, ref_ids, ref = reference
    ids, got = gguf_last_logits(tiny.pair(text, mmproj), prompt, photo_png)
    assert ids == ref_ids  # same tokenizer ids, same 16 image positions, no BOS
    diff = float(np.abs(got - ref).max())
    assert diff < TOLERANCE[text], f"{text}+{mmproj}: max |logit diff| {diff:.2e}"
    assert same_top_k(ref, got, top_k, tol=2 * diff)


@pytest.mark.parametrize("size", [(56, 56), (320, 240), (90, 300)])
def test_resized_images_get_the_same_token_grid(tiny, hf, size):
    # llama.cpp ignores the GGUF's pixel limits for Qwen2-VL: only image_max_tokens makes it resize like
    # transformers. The grids then agree; pixels differ a little (two bicubic implementations, up to ~5e-2 here).
    buf = io.BytesIO()
    draw_photo(4, size).save(buf, "PNG")
    prompt, ref_ids, _ = transformers_last_logits(hf, buf.getvalue())
    ids, _ = gguf_last_logits(tiny.pair("f16"), prompt, buf.getvalue(), tiny.config.image_max_tokens)
    assert ids == ref_ids and ids.count(-1) >= 8


def test_cache_reuses_entries_and_keys_on_config(tiny):
    start = time.perf_counter()
    again = tiny_gguf(quant=("Q8_0", "Q4_K_M"))
    assert time.perf_counter() - start < 1.0 and again == tiny
    base = cache.entry_dir(CACHE_NAME, tiny_cache_parts(TinyConfig()))
    assert tiny.hf_dir.parent == base
    stored = json.loads((base / cache.KEY_FILE).read_text())["parts"]["config"]
    assert stored == json.loads(json.dumps(asdict(TinyConfig())))  # tuples come back as lists
    for other in (replace(TinyConfig(), seed=1), replace(TinyConfig(), hidden_size=128)):
        assert cache.entry_dir(CACHE_NAME, tiny_cache_parts(other)) != base


def test_cached_build_is_atomic(tmp_path):
    calls = []

    def failing(d):
        (d / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError):
        cache.cached_build({"x": 1}, failing, name="t", root=tmp_path)
    assert list(tmp_path.iterdir()) == []

    def ok(d):
        calls.append(d)
        (d / "out.bin").write_bytes(b"y")

    first = cache.cached_build({"x": 1}, ok, name="t", root=tmp_path)
    assert cache.cached_build({"x": 1}, ok, name="t", root=tmp_path) == first and len(calls) == 1
    assert (first / "out.bin").read_bytes() == b"y" and sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_converter_is_fetched_only_from_an_sdist_and_errors_are_clear(tmp_path):
    with pytest.raises(gguf.ConverterMissing, match="rrg-train fetch-converter"):
        gguf.converter_dir(tmp_path)
    sdist = tmp_path / "llama_cpp_python-0.0.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name in ("convert_hf_to_gguf.py", "conversion/base.py", "gguf-py/gguf/__init__.py", "src/llama.cpp"):
            data = f"# {name}\n".encode()
            info = tarfile.TarInfo(f"llama_cpp_python-0.0.0/vendor/llama.cpp/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    root = tmp_path / "cache"
    conv = gguf.fetch_converter(root, sdist=sdist)
    assert conv == gguf.converter_dir(root) and not (conv / "src").exists()
    assert (conv / "conversion" / "base.py").is_file() and (conv / "gguf-py" / "gguf" / "__init__.py").is_file()


def test_conversion_and_quantize_failures_raise_clear_errors(tiny, tmp_path):
    # Without the qwen2 fallback the converter rejects the locally trained tokenizer's pre-tokenizer hash.
    out = tmp_path / "out.gguf"
    with pytest.raises(gguf.ConversionError, match="pre-tokenizer was not recognized"):
        gguf.run_converter([gguf.ConvertJob(tiny.hf_dir, out)])
    assert not out.exists()
    for qtype in ("Q9_9", "q8_0"):
        with pytest.raises(ValueError, match="quantization type"):
            gguf.quantize(tiny.text["f32"], tmp_path / "q.gguf", qtype)
