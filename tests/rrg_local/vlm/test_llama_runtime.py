"""The llama.cpp runtime on a real (tiny, random) Qwen2-VL GGUF pair the project built itself."""

import json
import subprocess
import sys

import numpy as np
import pytest

from rrg_local.vlm import answers, prompts, tasks
from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel, ModelError
from rrg_local.vlm.protocol import Choose, Force, Generate, ImageRef, Message, Score
from tests.conftest import draw_photo

BO = prompts.ConceptText("Bo", "dog", "A photo of a small dog", "The dog has a white patch over one eye.")
MUG = prompts.ConceptText("Mug", "mug", "A photo of a blue mug", "The mug has a chipped rim and a star.")
CAR = prompts.ConceptText("Zoom", "toy car", "A photo of a red toy car", "The car has yellow wheels.")


def photo(seed, size=(112, 112)) -> ImageRef:
    return ImageRef(draw_photo(seed, size))


def test_prompt_renders_with_the_gguf_chat_template(model):
    text = model.render(prompts.recognition(photo(1), BO))
    assert text.startswith("<|im_start|>system\n")
    assert "<|im_start|>user\n<__media__>Here is a personal dog called <Bo>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_unconstrained_output_is_garbage_but_scripts_always_give_json(model):
    free = model.run(prompts.recognition(photo(1), BO), [Generate(max_tokens=24, temperature=1.0)], seed=3)
    with pytest.raises(json.JSONDecodeError):
        json.loads(free.text)
    for seed in range(3):
        rec = tasks.recognize(model, photo(seed), BO)
        assert json.loads(rec.raw)["Answer"] in ("Yes", "No") and 0.0 <= rec.p_yes <= 1.0
    ident = tasks.identify(model, photo(5), [BO, MUG, CAR])
    data = json.loads(ident.raw)
    assert set(data) == {"Reasoning", "Answer", "Caption"} and data["Answer"] == ident.label
    assert sum(ident.probs.values()) == pytest.approx(1.0)


def test_p_yes_is_a_direct_read_of_the_answer_token(model, plain):
    image = photo(2)
    rec = tasks.recognize(model, image, BO, reasoning=False)
    logits = plain.next_token_logits(prompts.recognition(image, BO), prefix='{"Answer": "')
    yes, no = (model.tokenize(t)[0] for t in ("Yes", "No"))
    z = np.exp(logits.astype(np.float64) - logits.max())
    expected = z[yes] / (z[yes] + z[no])
    assert rec.p_yes == pytest.approx(expected, abs=1e-5)
    assert rec.answer == (expected >= 0.5)


def test_p_yes_after_reasoning_is_read_at_the_answer_position(model, plain):
    image = photo(3)
    msgs = prompts.recognition(image, MUG)
    result = model.run(msgs, answers.recognition_script())
    rec = answers.parse_recognition(result)
    # Replay the exact tokens up to the answer on the plain path and read the logits there directly.
    before_answer = [tok for step in result.step_tokens[:3] for tok in step]
    logits = plain.run_logits(msgs, [Force("", tokens=tuple(before_answer))])
    yes, no = (model.tokenize(t)[0] for t in ("Yes", "No"))
    z = np.exp(logits.astype(np.float64) - logits.max())
    # The replay evaluates the reasoning in one batch, generation did it token by token: the f16 KV cache
    # rounds differently, so the two reads agree to about 1e-4, not bit for bit.
    assert rec.p_yes == pytest.approx(z[yes] / (z[yes] + z[no]), abs=2e-4)
    assert result.step_tokens[3] == tuple(model.tokenize("Yes" if rec.answer else "No"))


def _token_by_token(plain, msgs, prefix: str, text: str) -> float:
    """log P(text | prefix), one plain run per token (each reads the next token's logits afresh)."""
    before = tuple(plain.tokenize(prefix))
    tokens = plain.tokenize(text)
    total = 0.0
    for k, token in enumerate(tokens):
        z = plain.run_logits(msgs, [Force("", tokens=before + tuple(tokens[:k]))]).astype(np.float64)
        total += z[token] - z.max() - np.log(np.exp(z - z.max()).sum())
    return total


@pytest.mark.parametrize("n_batch", [512, 4])  # 4: the scored text spans several decode batches
def test_score_is_the_texts_log_probability_token_by_token(tiny_config, plain, n_batch):
    from dataclasses import replace

    msgs = prompts.speaker(photo(4), "mug")
    text = "A photo of a blue mug.</coarse>"
    expected = _token_by_token(plain, msgs, "<coarse>", text)
    with LlamaVisionModel(replace(tiny_config, n_batch=n_batch)) as m:
        result = m.run(msgs, [Force("<coarse>"), Score(text), Choose(("\n", "x"))])
        forced = m.run(msgs, [Force("<coarse>"), Force(text), Choose(("\n", "x"))])
    (scored,) = result.scores
    assert scored.n_tokens == len(plain.tokenize(text)) > 4
    assert scored.logprob == pytest.approx(expected, abs=2e-3) and scored.logprob < 0
    assert result.text == forced.text and result.step_tokens[1] == forced.step_tokens[1]
    # The step leaves the logits of its last token for the next step, as Force does.
    assert result.choices[0].probs == pytest.approx(forced.choices[0].probs, abs=1e-5)


def test_image_is_encoded_once_and_the_photo_prefix_is_reused(model):
    image = photo(4)
    tasks.recognize(model, image, BO, reasoning=False)
    first = model.stats.tokens_evaluated
    assert model.stats.image_encodes == 1
    for concept in (MUG, CAR, BO):
        tasks.recognize(model, image, concept, reasoning=False)
    assert model.stats.image_encodes == 1
    per_call = (model.stats.tokens_evaluated - first) / 3
    # Only the concept text is evaluated again: not the system prompt, not the photo's 16 tokens.
    system = len(model.tokenize(prompts.LISTENER_SYSTEM))
    assert per_call <= first - 16 - system
    model.embed_image(image)
    assert model.stats.image_encodes == 1 and model.stats.image_cache_hits >= 1


def test_cached_path_gives_the_same_results_as_the_plain_path(model, plain):
    calls = [(photo(s), c) for s in (6, 7) for c in (BO, MUG, CAR)]
    for image, concept in calls:
        fast = tasks.recognize(model, image, concept)
        slow = tasks.recognize(plain, image, concept)
        assert fast.raw == slow.raw
        assert fast.p_yes == pytest.approx(slow.p_yes, abs=1e-5)
    assert plain.stats.image_encodes == len(calls) and model.stats.image_encodes == 2


def test_several_images_in_one_prompt(model):
    a, b = photo(8), photo(9)
    msgs = [Message.of("user", a, "Compare this photo", b, "with this one.")]
    result = model.run(msgs, [Generate(max_tokens=4)])
    assert model.stats.image_encodes == 2 and result.n_generated <= 4
    assert model.render(msgs).count("<__media__>") == 2


def test_streaming_pieces_make_the_whole_answer(model):
    pieces = []
    text = tasks.ask(model, photo(1), "What is in this photo?", [BO], on_text=pieces.append, max_tokens=12)
    assert pieces and "".join(pieces).strip() == text


def test_image_embedding_is_pooled_and_normalised(model):
    a1 = model.embed_image(photo(10))
    a2 = model.embed_image(photo(10))
    b = model.embed_image(photo(11))
    assert a1.shape == (model.info.n_embd,) and a1.dtype == np.float32
    assert np.linalg.norm(a1) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(a1, a2) and not np.allclose(a1, b)


def test_missing_mmproj_corrupt_gguf_and_bad_images(tmp_path, tiny_config):
    with pytest.raises(ModelError, match="mmproj not found: .*nope.gguf"):
        LlamaVisionModel(LlamaConfig(model=tiny_config.model, mmproj=tmp_path / "nope.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="model is not a GGUF file"):
        LlamaVisionModel(LlamaConfig(model=junk, mmproj=tiny_config.mmproj))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_config.model.read_bytes()[:4096])
    with pytest.raises(ModelError, match="cannot load model"):
        LlamaVisionModel(LlamaConfig(model=truncated, mmproj=tiny_config.mmproj)).run(
            prompts.question(None, "hi"), [Generate(max_tokens=1)]
        )
    swapped = LlamaVisionModel(LlamaConfig(model=tiny_config.model, mmproj=tiny_config.model))
    with pytest.raises(ModelError, match="cannot load mmproj"):
        swapped.embed_image(photo(1))
    with LlamaVisionModel(tiny_config) as m:
        with pytest.raises(ModelError, match="image cannot be used: .*not an image"):
            tasks.recognize(m, ImageRef(b"definitely not a jpeg"), BO)
        with pytest.raises(ModelError, match="image not found"):
            tasks.recognize(m, ImageRef(tmp_path / "gone.jpg"), BO)
        assert tasks.recognize(m, photo(1), BO, reasoning=False)  # still usable afterwards


def test_llama_logs_never_reach_the_terminal(tiny_config):
    code = (
        "from pathlib import Path\n"
        "from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel\n"
        "from rrg_local.vlm import tasks, prompts\n"
        "from rrg_local.vlm.protocol import ImageRef\n"
        "from PIL import Image\n"
        f"m = LlamaVisionModel(LlamaConfig(model=Path({str(tiny_config.model)!r}), "
        f"mmproj=Path({str(tiny_config.mmproj)!r}), n_threads=1))\n"
        "r = tasks.recognize(m, ImageRef(Image.new('RGB', (112, 112), 'red')), "
        "prompts.ConceptText('Bo', 'dog'), reasoning=False)\n"
        "m.close()\nprint('ok', r.answer in (True, False))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok True" and out.stderr == ""


def test_image_max_tokens_caps_the_encoder(tiny_config):
    from dataclasses import replace

    big = photo(12, (448, 448))
    costs = {}
    for cap in (None, 16):
        with LlamaVisionModel(replace(tiny_config, image_max_tokens=cap)) as m:
            m.embed_image(big)
            costs[cap] = m.stats.image_tokens_encoded
    assert costs[16] <= 16 < costs[None]


def test_reuse_is_counted_in_tokens(model):
    image = photo(13)
    tasks.recognize(model, image, BO, reasoning=False)
    first = model.stats.tokens_evaluated
    tasks.recognize(model, image, MUG, reasoning=False)
    # The second call reused the system prompt and the photo's 16 image tokens, and evaluated the rest.
    reused = model.stats.tokens_reused
    assert reused >= 16 + len(model.tokenize(prompts.LISTENER_SYSTEM))
    assert reused + (model.stats.tokens_evaluated - first) >= first
