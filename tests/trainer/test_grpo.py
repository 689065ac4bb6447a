"""GRPO pieces on a tiny random Qwen2-VL (built here, about 2 s): log-probs, one update, the listener, learning."""

from __future__ import annotations

import doctest

import pytest

from tests.conftest import draw_photo
from trainer import grpo
from trainer.tiny import TinyConfig, build_tiny

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

# Recomputed log-probs vs generation-time ones: same float32 maths, full forward vs KV-cached decode.
LOGPROB_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return build_tiny(tmp_path_factory.mktemp("tiny-grpo") / "hf", TinyConfig())


@pytest.fixture(scope="module")
def parts(tiny_dir):
    return transformers.AutoTokenizer.from_pretrained(tiny_dir), transformers.AutoImageProcessor.from_pretrained(
        tiny_dir
    )


def make_model(tiny_dir, config: grpo.GRPOConfig):
    torch.set_num_threads(1)
    base = transformers.Qwen2VLForConditionalGeneration.from_pretrained(tiny_dir)
    return grpo.add_lora(base, config)


def small_prompt(model, parts, seed: int = 1) -> grpo.Prompt:
    tok, proc = parts
    return grpo.encode_prompt(model, tok, proc, draw_photo(seed, (56, 56)), grpo.chat("Describe it."))


def by_hand(model, prompt: grpo.Prompt, ids) -> torch.Tensor:
    """The model's logits (L, vocab) for `ids` (1, L) on the prompt's photo, one plain forward pass."""
    with torch.no_grad():
        return model(
            input_ids=ids,
            mm_token_type_ids=(ids == model.config.image_token_id).long(),
            pixel_values=prompt.pixel_values,
            image_grid_thw=prompt.image_grid_thw,
        ).logits[0]


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_doctests():
    assert doctest.testmod(grpo).failed == 0


def test_lora_wraps_only_the_language_model(tiny_dir):
    model = make_model(tiny_dir, grpo.GRPOConfig(lora_r=4, lora_alpha=8))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 7 * 2  # 2 layers x (q, k, v, o, gate, up, down) x (A, B)
    assert all(".language_model.layers." in n and "lora_" in n for n in trainable)
    assert not any(".visual." in n and "lora_" in n for n, _ in model.named_parameters())


def test_clipped_surrogate_stops_the_gradient_outside_the_clip():
    old = torch.zeros(1, 2)
    new = torch.tensor([[0.5, 0.0]], requires_grad=True)  # ratio e^0.5 ~ 1.65 > 1.2 on the first token
    loss = grpo.clipped_surrogate(new, old, torch.tensor([1.0]), torch.ones(1, 2), clip_eps=0.2)
    loss.backward()
    assert new.grad[0, 0] == 0 and new.grad[0, 1] == pytest.approx(-0.5)


def test_completion_mask_keeps_the_first_eos():
    ids = torch.tensor([[5, 9, 7, 9], [5, 6, 7, 8]])
    assert grpo.completion_mask(ids, [9]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_sampled_logprobs_match_the_recomputed_ones(tiny_dir, parts):
    config = grpo.GRPOConfig(group_size=4, max_new_tokens=8, lora_r=4, lora_alpha=8)
    model = make_model(tiny_dir, config)
    torch.manual_seed(0)
    rollout = grpo.sample(model, small_prompt(model, parts), config)
    assert rollout.completions.shape == (4, 8)
    assert not torch.isin(rollout.completions, torch.tensor(grpo.suppressed_ids(model))).any()
    with torch.no_grad():
        again = grpo.sequence_logprobs(model, rollout, config.temperature)
    assert (again - rollout.logprobs).abs().max() < LOGPROB_TOLERANCE


def test_one_step_moves_lora_and_nothing_else(tiny_dir, parts):
    config = grpo.GRPOConfig(group_size=4, max_new_tokens=6, lr=1e-2, kl_beta=0.1, lora_r=4, lora_alpha=8)
    model = make_model(tiny_dir, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    before = snapshot(model)
    torch.manual_seed(0)
    rollouts = [grpo.sample(model, small_prompt(model, parts, seed), config) for seed in (1, 2)]  # 2 micro-batches
    stats = grpo.grpo_step(model, optimizer, rollouts, [[1.0, 0.0, 0.0, 1.0], [0.0, 0.5, 1.0, 0.0]], config)
    assert stats["grad_norm"] > 0
    after = snapshot(model)
    lora = [n for n in before if "lora_" in n]
    assert lora and all(not torch.equal(before[n], after[n]) for n in lora if "lora_B" in n)
    frozen = [n for n in before if "lora_" not in n]
    assert any(".visual." in n for n in frozen)
    assert all(torch.equal(before[n], after[n]) for n in frozen)


def test_listener_reads_the_base_model(tiny_dir, parts):
    tok, proc = parts
    model = make_model(tiny_dir, grpo.GRPOConfig(lora_r=4, lora_alpha=8))
    image = draw_photo(4, (56, 56))
    p_yes = grpo.listener_p_yes(model, tok, proc, image, "A photo of a red mug.")

    prompt = grpo.listener_prompt(model, tok, proc, image, "A photo of a red mug.")
    text = tok.decode(prompt.input_ids[0])
    assert "Is <Bo> in this photo?" in text and text.endswith('<|im_start|>assistant\n{"Answer": "')
    yes, no = (tok(o, add_special_tokens=False).input_ids[0] for o in ("Yes", "No"))
    ids = prompt.input_ids
    logits = by_hand(model, prompt, ids)[-1]
    pair = torch.softmax(logits, -1)[[yes, no]]
    assert p_yes == pytest.approx(float(pair[0] / pair.sum()), rel=1e-5)

    with torch.no_grad():  # a visibly different adapter changes the speaker but not the listener
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p))
        tail = grpo.Rollout(prompt, ids[:, -4:], torch.ones(1, 4), torch.zeros(1, 4))  # the prompt's last tokens
        adapted = grpo.sequence_logprobs(model, tail)
        with grpo.adapter_off(model):
            plain = grpo.sequence_logprobs(model, tail)
    assert (adapted - plain).abs().max() > 1e-3
    assert grpo.listener_p_yes(model, tok, proc, image, "A photo of a red mug.") == pytest.approx(p_yes, rel=1e-6)


def test_grpo_raises_a_learnable_reward(tiny_dir, parts):
    # Reward: the share of completion tokens from the lower half of the vocabulary (0.5 at random). The random
    # tiny model's logits are nearly flat (std ~0.16), so a low temperature makes the LoRA's shifts count.
    config = grpo.GRPOConfig(group_size=8, max_new_tokens=8, temperature=0.05, lr=0.1, lora_r=8, lora_alpha=16)
    model = make_model(tiny_dir, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    prompt = small_prompt(model, parts)
    half = model.config.text_config.vocab_size // 2
    torch.manual_seed(0)
    means = []
    for _ in range(20):
        rollout = grpo.sample(model, prompt, config)
        rewards = [float((c < half).float().mean()) for c in rollout.completions]
        means.append(sum(rewards) / len(rewards))
        grpo.grpo_step(model, optimizer, [rollout], [rewards], config)
    start, end = sum(means[:3]) / 3, sum(means[-5:]) / 5
    assert end > start + 0.2 and end > 0.8, means


def test_caption_listener_scores_each_completion_on_the_base_model(tiny_dir, parts):
    tok, proc = parts
    model = make_model(tiny_dir, grpo.GRPOConfig(lora_r=4, lora_alpha=8))
    speaker = grpo.encode_prompt(model, tok, proc, draw_photo(1, (56, 56)), grpo.speaker_chat("mug"))
    rollout = grpo.sample(model, speaker, grpo.GRPOConfig(group_size=3, max_new_tokens=6))
    image = draw_photo(5, (56, 56))
    scores = grpo.listener_caption_logprobs(model, tok, proc, image, rollout, "mug")
    assert len(scores) == 3 and all(s < 0 for s in scores)
    # By hand: each completion after the speaker prompt on the other photo, its tokens up to EOS (a softmax over
    # the tokens the speaker may write).
    prompt = grpo.encode_prompt(model, tok, proc, image, grpo.speaker_chat("mug"))
    for g, score in enumerate(scores):
        n = int(rollout.mask[g].sum())
        ids = torch.cat([prompt.input_ids, rollout.completions[g : g + 1, :n]], dim=1)
        logits = by_hand(model, prompt, ids)[-n - 1 : -1].float()
        logits[:, grpo.suppressed_ids(model)] = float("-inf")  # tokens the speaker may never write, as sampled
        expected = torch.log_softmax(logits, -1).gather(1, rollout.completions[g, :n, None]).sum()
        assert score == pytest.approx(float(expected), abs=1e-3)
    with torch.no_grad():  # the listener is the base: the speaker's adapter does not move it
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p))
    assert grpo.listener_caption_logprobs(model, tok, proc, image, rollout, "mug") == pytest.approx(scores, abs=1e-4)


def test_caption_rollout_rereads_descriptions_as_the_runtime_does(parts):
    tok, _ = parts
    texts = ["<coarse>A photo of a red mug.</coarse>  \n<detailed>The  red mug has  dots.</detailed>", "no tags"]
    sampled = [tok(t, add_special_tokens=False).input_ids + [tok.eos_token_id or 0] for t in texts]
    width = max(map(len, sampled))
    completions = torch.zeros((2, width + 2), dtype=torch.long)  # padded past EOS, as sampling leaves them
    mask = torch.zeros((2, width + 2))
    for i, ids in enumerate(sampled):
        completions[i, : len(ids)], mask[i, : len(ids)] = torch.tensor(ids), 1
    rollout = grpo.Rollout(None, completions, mask, torch.zeros(mask.shape))
    read = grpo.caption_rollout(tok, rollout, texts)
    # Whitespace normalised and the answer written as `tasks.caption_likelihood` scores it after "<coarse>".
    answer = "A photo of a red mug.</coarse>\n<detailed>The red mug has dots.</detailed>"
    first = read.completions[0][read.mask[0].bool()].tolist()
    assert first == tok(answer, add_special_tokens=False).input_ids
    # No tags: scored as sampled, EOS included.
    assert read.completions[1][read.mask[1].bool()].tolist() == sampled[1]
