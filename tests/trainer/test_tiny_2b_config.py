"""`QWEN2VL_2B` has Qwen2-VL-2B-Instruct's real shapes. Checked on the meta device: nothing is allocated or built."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from trainer.tiny import QWEN2VL_2B, TinyConfig, hf_config, preprocessor_config, tiny_cache_parts
from trainer.tiny_tokenizer import SPECIAL_TOKENS

# Qwen2-VL-2B-Instruct's checkpoint: 1,543,714,304 text + 665,271,296 vision parameters (tied embeddings).
REAL_TEXT_PARAMS = 1_543_714_304
REAL_VISION_PARAMS = 665_271_296


def meta_model(config: TinyConfig):
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    token_ids = {tok: config.bpe_vocab + i for i, tok in enumerate(SPECIAL_TOKENS)}
    hf = hf_config(config, config.bpe_vocab + len(SPECIAL_TOKENS), token_ids)
    with torch.device("meta"):
        return Qwen2VLForConditionalGeneration(hf)


def test_2b_config_has_the_real_shapes_and_parameter_count():
    model = meta_model(QWEN2VL_2B)
    params = dict(model.named_parameters())  # tied weights appear once
    assert all(p.device.type == "meta" for p in params.values())
    vision = sum(p.numel() for n, p in params.items() if ".visual." in f".{n}")
    total = sum(p.numel() for p in params.values())
    assert (total - vision, vision) == (REAL_TEXT_PARAMS, REAL_VISION_PARAMS)
    assert 2.2e9 < total < 2.21e9

    text, vis = model.config.text_config, model.config.vision_config
    assert (text.vocab_size, text.hidden_size, text.intermediate_size) == (151936, 1536, 8960)
    assert (text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (28, 12, 2)
    assert text.rope_parameters["rope_theta"] == 1e6 and text.rope_parameters["mrope_section"] == [16, 24, 24]
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.get_input_embeddings().weight
    assert model.get_input_embeddings().weight.shape == (151936, 1536)
    assert (vis.embed_dim, vis.depth, vis.num_heads, vis.mlp_ratio, vis.hidden_size) == (1280, 32, 16, 4, 1536)
    assert (vis.patch_size, vis.spatial_merge_size) == (14, 2)
    block = model.model.visual.blocks[0]
    assert block.mlp.fc1.weight.shape == (5120, 1280)

    pre = preprocessor_config(QWEN2VL_2B)
    assert (pre["min_pixels"], pre["max_pixels"]) == (3136, 12845056)
    assert QWEN2VL_2B.image_max_tokens == 16384
    assert QWEN2VL_2B.dtype == "bfloat16" and "f32" not in QWEN2VL_2B.gguf_types


def test_vocab_padding_is_checked_and_keyed():
    tiny = TinyConfig()
    assert meta_model(tiny).config.text_config.vocab_size == tiny.bpe_vocab + len(SPECIAL_TOKENS)
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        meta_model(TinyConfig(vocab_size=100))
    assert tiny_cache_parts(QWEN2VL_2B) != tiny_cache_parts(tiny)
    assert asdict(QWEN2VL_2B)["vocab_size"] == 151936
