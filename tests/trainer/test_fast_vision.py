"""The fast vision forwards compute what the stock HF ones do (outputs and gradients), take the batched path
only where it is valid, and leave the weights and the saved model untouched."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from trainer import demo_model as dm  # noqa: E402
from trainer.fast_vision import attention_kernel, speed_up_vision  # noqa: E402
from trainer.tiny import TinyConfig  # noqa: E402

SHAPE = TinyConfig(
    bpe_vocab=900, hidden_size=64, intermediate_size=128, num_layers=1, vision_embed_dim=32, vision_depth=2,
    vision_heads=2, min_pixels=28 * 28, max_pixels=112 * 112, tie_word_embeddings=True,
)  # fmt: skip


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    from transformers import AutoModelForImageTextToText

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    init = dm.init_model(dm.DemoConfig(shape=SHAPE, photo_size=112), tmp_path_factory.mktemp("fast"))
    yield AutoModelForImageTextToText.from_pretrained(init, dtype=torch.float32), dm.Encoder(init).proc
    torch.set_num_threads(before)


def photos(proc, sizes):
    from PIL import Image

    g = torch.Generator().manual_seed(len(sizes))
    images = [Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).byte().numpy()) for w, h in sizes]
    px = proc(images=images, return_tensors="pt")
    return px["pixel_values"], px["image_grid_thw"]


def tower_and_grads(model, pixels, thw):
    model.zero_grad(set_to_none=True)
    with attention_kernel(model):
        out = model.model.visual(pixels, grid_thw=thw).pooler_output
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.model.visual.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize(
    "sizes", [[(112, 112)] * 3, [(112, 112), (56, 112), (112, 56)]], ids=["one size: batched", "mixed: stock path"]
)
def test_same_outputs_and_gradients_as_the_stock_forwards(stock, sizes):
    model, proc = stock
    fast = copy.deepcopy(model)
    assert speed_up_vision(fast) == 1 + SHAPE.vision_depth  # the patch embedding and each block's attention
    pixels, thw = photos(proc, sizes)
    want, want_grads = tower_and_grads(model, pixels, thw)
    got, got_grads = tower_and_grads(fast, pixels, thw)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    assert want_grads.keys() == got_grads.keys() and len(want_grads) > 5
    for name, grad in want_grads.items():
        assert torch.allclose(got_grads[name], grad, atol=1e-5, rtol=1e-3), name


def test_batched_attention_only_for_photos_of_one_size(stock, monkeypatch):
    import torch.nn.functional as F

    model, proc = stock
    fast = copy.deepcopy(model)
    speed_up_vision(fast)
    calls = []
    real = F.scaled_dot_product_attention

    def counting(q, *args, **kwargs):
        calls.append(tuple(q.shape))
        return real(q, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    with torch.no_grad():
        fast.model.visual(*photos(proc, [(112, 112)] * 3))
        batched, calls[:] = list(calls), []
        fast.model.visual(*photos(proc, [(112, 112), (56, 112)]))
    heads, patches = SHAPE.vision_heads, (112 // 14) ** 2
    assert batched == [(3, heads, patches, SHAPE.vision_embed_dim // heads)] * SHAPE.vision_depth
    assert len(calls) == 2 * SHAPE.vision_depth  # one call per photo and block, as HF does


def test_the_math_kernel_only_for_a_fast_model(stock):
    model, _ = stock
    fast = copy.deepcopy(model)
    speed_up_vision(fast)
    flags = torch.backends.cuda.flash_sdp_enabled, torch.backends.cuda.math_sdp_enabled  # global, on any device
    with attention_kernel(fast):
        assert [f() for f in flags] == [False, True]
    with attention_kernel(model), attention_kernel(fast.model.visual.blocks[0]):  # a stock model; a fast part
        assert [f() for f in flags] == [False, True]
    with attention_kernel(model):
        assert [f() for f in flags] == [True, True]


def test_weights_and_saved_model_unchanged(stock, tmp_path):
    model, _ = stock
    fast = copy.deepcopy(model)
    speed_up_vision(fast)
    assert speed_up_vision(fast) == 0  # a second call changes nothing more
    before, after = model.state_dict(), fast.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    fast.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]


def test_a_wrapped_patch_embedding_keeps_its_own_forward(stock):
    model, proc = stock
    fast = copy.deepcopy(model)
    speed_up_vision(fast)
    embed = fast.model.visual.patch_embed
    pixels, _ = photos(proc, [(112, 112)])

    class Shifted(torch.nn.Conv3d):  # stands for an adapter wrapping the projection
        def forward(self, x):
            return super().forward(x) + 1.0

    shifted = Shifted(embed.in_channels, embed.embed_dim, embed.proj.kernel_size, embed.proj.kernel_size, bias=False)
    shifted.weight = embed.proj.weight
    plain = embed(pixels)
    embed.proj = shifted
    assert torch.allclose(embed(pixels), plain + 1.0, atol=1e-5)
