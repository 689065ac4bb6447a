"""Throughput probe for the RRG trainer's three phases on random-weight Qwen2-VL shapes (no download).

Run: `python bench/gpu_probe.py --shape 2b` on a GPU machine (bf16), or `--shape tiny --device cpu` here
to check the script. One RRG step for one target photo is: the speaker (policy, LoRA on) samples G
descriptions; the listener (same model, adapter off, no_grad) scores P(Yes) for each description against
K candidate photos; GRPO backpropagates through the G completions. The probe times each phase at the
paper's sizes (G = 4, K = 3, 64-token descriptions, 448 px photos = 256 image tokens, LoRA rank 64 on the
language model's linear layers) and prints seconds and peak memory, with the speaker's time as the baseline.
"""

from __future__ import annotations

import argparse
import time

SHAPES = {
    # text hidden, layers, heads, kv heads, ffn, vocab; vision embed, depth, heads
    "tiny": dict(hidden=64, layers=2, heads=4, kv=2, ffn=128, vocab=1024, v_embed=32, v_depth=2, v_heads=2),
    "2b": dict(hidden=1536, layers=28, heads=12, kv=2, ffn=8960, vocab=151936, v_embed=1280, v_depth=32, v_heads=16),
    "7b": dict(hidden=3584, layers=28, heads=28, kv=4, ffn=18944, vocab=152064, v_embed=1280, v_depth=32, v_heads=16),
}


def build(shape: str, device, dtype):
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    s = SHAPES[shape]
    head_dim = s["hidden"] // s["heads"]
    half = head_dim // 2
    hw = 3 * half // 8
    vocab = s["vocab"]
    ids = dict(
        image_token_id=vocab - 4,
        video_token_id=vocab - 3,
        vision_start_token_id=vocab - 2,
        vision_end_token_id=vocab - 1,
    )
    cfg = Qwen2VLConfig(
        text_config=dict(
            vocab_size=vocab,
            hidden_size=s["hidden"],
            intermediate_size=s["ffn"],
            num_hidden_layers=s["layers"],
            num_attention_heads=s["heads"],
            num_key_value_heads=s["kv"],
            max_position_embeddings=4096,
            rope_scaling={"type": "mrope", "mrope_section": [half - 2 * hw, hw, hw]},
            tie_word_embeddings=True,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
            **ids,
        ),
        vision_config=dict(
            depth=s["v_depth"],
            embed_dim=s["v_embed"],
            hidden_size=s["hidden"],
            num_heads=s["v_heads"],
            mlp_ratio=4,
            patch_size=14,
            spatial_merge_size=2,
            in_channels=3,
            temporal_patch_size=2,
        ),
        **ids,
    )
    cfg._attn_implementation = "sdpa"
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(cfg, dtype=dtype)
    return model.eval(), cfg, ids


def image_inputs(n_images: int, side: int, device, dtype):
    """Random pixels in Qwen2-VL's patch layout: (n * grid_t * grid_h * grid_w, 3 * 2 * 14 * 14)."""
    import torch

    grid = side // 14
    pixels = torch.randn(n_images * grid * grid, 3 * 2 * 14 * 14, device=device, dtype=dtype)
    thw = torch.tensor([[1, grid, grid]] * n_images, device=device)
    return pixels, thw, (grid // 2) ** 2


def prompt_ids(ids, n_image_tokens: int, text_len: int, vocab: int, device, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    text = torch.randint(10, vocab - 10, (text_len,), generator=g)
    seq = torch.cat(
        [
            torch.tensor([ids["vision_start_token_id"]]),
            torch.full((n_image_tokens,), ids["image_token_id"]),
            torch.tensor([ids["vision_end_token_id"]]),
            text,
        ]
    )
    return seq.to(device)


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=list(SHAPES), default="2b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--side", type=int, default=448)
    ap.add_argument("--G", type=int, default=4)
    ap.add_argument("--K", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--grad-checkpointing", action="store_true")
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    if args.device == "cpu":
        torch.set_num_threads(1)
    t = time.perf_counter()
    base, cfg, ids = build(args.shape, args.device, dtype)
    build_s = time.perf_counter() - t
    n_params = sum(p.numel() for p in base.parameters())
    targets = r"^model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)$"
    model = get_peft_model(base, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules=targets))
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_lora > 0, "LoRA matched no layer"
    lora_names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any("visual" in n for n in lora_names), "LoRA must stay off the vision tower"
    if args.grad_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    vocab = cfg.text_config.vocab_size
    pix1, thw1, n_img = image_inputs(1, args.side, args.device, dtype)
    prompt = prompt_ids(ids, n_img, 48, vocab, args.device, 0)

    import inspect

    takes_mm = "mm_token_type_ids" in inspect.signature(base.forward).parameters

    def mm_types(input_ids) -> dict:
        # transformers >= 5.2x needs it for M-RoPE positions; older 5.x does not take it.
        return {"mm_token_type_ids": (input_ids == ids["image_token_id"]).long()} if takes_mm else {}

    def speaker():
        ids_g = prompt.unsqueeze(0).repeat(args.G, 1)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids_g,
                attention_mask=torch.ones_like(ids_g),
                pixel_values=pix1.repeat(args.G, 1),
                image_grid_thw=thw1.repeat(args.G, 1),
                **mm_types(ids_g),
                do_sample=True,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                pad_token_id=0,
            )
        return out[:, prompt.numel() :]

    def listener(completions):
        # K candidate photos x G descriptions, one batch, adapter off.
        pixk, thwk, _ = image_inputs(args.K, args.side, args.device, dtype)
        rows = []
        for k in range(args.K):
            for g in range(args.G):
                rows.append(
                    torch.cat(
                        [
                            prompt_ids(ids, n_img, 8, vocab, args.device, k),
                            completions[g],
                            prompt_ids(ids, 0, 12, vocab, args.device, 99)[2:],
                        ]
                    )
                )
        batch = torch.stack(rows)
        order = [k for k in range(args.K) for _ in range(args.G)]
        with torch.no_grad(), model.disable_adapter():
            logits = model(
                input_ids=batch,
                attention_mask=torch.ones_like(batch),
                pixel_values=torch.cat(
                    [pixk[k * (pixk.shape[0] // args.K) : (k + 1) * (pixk.shape[0] // args.K)] for k in order]
                ),
                image_grid_thw=thwk[order],
                **mm_types(batch),
                logits_to_keep=1,
            ).logits
        return logits[:, -1].float().softmax(-1)[:, :2]

    def update(completions):
        model.train()
        seqs = torch.cat([prompt.unsqueeze(0).repeat(args.G, 1), completions], dim=1)
        out = model(
            input_ids=seqs,
            attention_mask=torch.ones_like(seqs),
            pixel_values=pix1.repeat(args.G, 1),
            image_grid_thw=thw1.repeat(args.G, 1),
            **mm_types(seqs),
        )
        logp = out.logits[:, prompt.numel() - 1 : -1].float().log_softmax(-1)
        tok = logp.gather(-1, completions.unsqueeze(-1)).squeeze(-1)
        adv = torch.randn(args.G, 1, device=tok.device)
        loss = -(adv * tok).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
        model.eval()
        return float(loss.detach())

    phases = {"speaker": speaker, "listener": None, "update": None}
    times = {k: [] for k in phases}
    if str(args.device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.repeat + 1):
        sync(args.device)
        t0 = time.perf_counter()
        comp = speaker()
        sync(args.device)
        t1 = time.perf_counter()
        listener(comp)
        sync(args.device)
        t2 = time.perf_counter()
        update(comp)
        sync(args.device)
        t3 = time.perf_counter()
        if i:  # the first round warms up
            times["speaker"].append(t1 - t0)
            times["listener"].append(t2 - t1)
            times["update"].append(t3 - t2)
    peak = torch.cuda.max_memory_allocated() / 2**30 if str(args.device).startswith("cuda") else float("nan")
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    step = sum(med.values())
    name = torch.cuda.get_device_name() if str(args.device).startswith("cuda") else "cpu"
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(
        f"shape {args.shape}: {n_params / 1e9:.2f} B params, LoRA r{args.rank}: {n_lora / 1e6:.1f} M trainable; "
        f"{name}, {dtype}; built in {build_s:.1f}s; G={args.G} K={args.K} {args.new_tokens} new tokens, "
        f"{args.side}px ({n_img} image tokens), grad ckpt {args.grad_checkpointing}"
    )
    print(f"{'phase':<34} {'seconds':>8}  ratio")
    print(f"{'speaker: sample G descriptions':<34} {med['speaker']:8.3f}  1.00 (baseline)")
    print(f"{'listener: K x G P(Yes), no grad':<34} {med['listener']:8.3f}  {med['listener'] / med['speaker']:.2f}")
    print(f"{'update: GRPO fwd+bwd over G':<34} {med['update']:8.3f}  {med['update'] / med['speaker']:.2f}")
    print(f"{'one RRG step (one target photo)':<34} {step:8.3f}  {step / med['speaker']:.2f}")
    print(f"peak GPU memory: {peak:.1f} GiB; steps/hour at this size: {3600 / step:.0f}")


if __name__ == "__main__":
    main()
