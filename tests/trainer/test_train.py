"""`rrg-train train` end to end on the cached tiny Qwen2-VL: two steps, a resumed third, config parsing, export."""

from __future__ import annotations

import doctest
import json
import math
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import SMALL_TRAIN as SMALL
from tests.conftest import write_benchmark
from trainer import config as config_module
from trainer.cli import main
from trainer.config import ConfigError, TrainConfig, load_config

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

# 4 concepts x 3 photos in 2 categories; test_fraction 0 keeps all four for training.


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    write_benchmark(root)
    return root


@pytest.fixture(scope="module")
def config_file(bench, tiny) -> Path:
    values = {
        "base": str(tiny.hf_dir),
        "data_root": str(bench / "photos"),
        "categories": str(bench / "categories.csv"),
        "out_dir": str(bench / "run"),
        "name": "tiny-rrg",
        "pre_tokenizer": "qwen2",
        "test_fraction": 0.0,
        "steps": 2,
        "lr": 0.01,
        "save_every": 1,
        **SMALL,
    }
    path = bench / "train.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()))
    return path


@pytest.fixture(scope="module")
def run_dir(config_file) -> Path:
    from trainer.train import train

    torch.set_num_threads(1)
    return train(load_config(config_file))


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_doctests():
    assert doctest.testmod(config_module).failed == 0


def test_two_steps_write_metrics_and_a_trained_adapter(run_dir, tiny):
    from safetensors.torch import load_file

    from trainer.train import METRIC_KEYS

    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert set(METRIC_KEYS) <= set(row)
        assert all(math.isfinite(v) for v in row.values())
        assert 0 <= row["listener_acc"] <= 1 and row["completion_len"] > 0 and row["grad_norm"] > 0
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(w.abs().max() > 0 for w in lora_b)  # peft initialises B to zero
    run = json.loads((run_dir / "run.json").read_text())
    assert run["base"] == str(Path(tiny.hf_dir).resolve()) and run["name"] == "tiny-rrg"
    assert run["pre_tokenizer"] == "qwen2"
    from PIL import Image  # the reward curve is plotted (matplotlib comes with the train extra)

    with Image.open(run_dir / "reward.png") as plot:
        assert plot.size[0] > 200 and plot.size[1] > 100


def test_resume_runs_only_the_missing_step(run_dir, tmp_path):
    from trainer.train import train

    resumed = tmp_path / "run"
    shutil.copytree(run_dir, resumed)
    config = load_config(run_dir.parent / "train.yaml", [f"out_dir={resumed}", "steps=3"])
    train(config)
    assert [r["step"] for r in metrics(resumed)] == [1, 2, 3]
    assert metrics(resumed)[:2] == metrics(run_dir)
    state = torch.load(resumed / "state.pt", weights_only=False)
    assert state["step"] == 3
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {3.0}  # a fresh optimizer would say 1: the saved one was restored
    # RNG states, optimizer and adapter restored: step 3 is the one an uninterrupted run takes.
    straight = train(load_config(run_dir.parent / "train.yaml", [f"out_dir={tmp_path / 'straight'}", "steps=3"]))
    for key in ("reward_mean", "loss", "grad_norm"):
        assert metrics(resumed)[2][key] == pytest.approx(metrics(straight)[2][key], rel=1e-6)


def test_resume_refuses_a_different_config(run_dir, tmp_path):
    from trainer.train import train

    resumed = tmp_path / "run"
    shutil.copytree(run_dir, resumed)
    with pytest.raises(ConfigError, match="lr"):
        train(load_config(run_dir.parent / "train.yaml", [f"out_dir={resumed}", "steps=3", "lr=0.5"]))


def test_gradient_checkpointing_gives_the_same_step(run_dir, tmp_path):
    from trainer.train import train

    config = load_config(run_dir.parent / "train.yaml", [f"out_dir={tmp_path / 'gc'}", "steps=1"])
    first = metrics(train(replace(config, gradient_checkpointing=True)))[0]
    plain = metrics(run_dir)[0]
    for key in ("reward_mean", "loss", "grad_norm"):
        assert first[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("listener", ["caption", "caption_text", "both"])
def test_the_caption_listener_plays_the_game(run_dir, tmp_path, listener):
    from trainer.train import train

    config = load_config(run_dir.parent / "train.yaml", [f"out_dir={tmp_path / 'caption'}", "steps=1"])
    row = metrics(train(replace(config, listener=listener)))[0]
    plain = metrics(run_dir)[0]
    assert 0 <= row["listener_acc"] <= 1 and 0 <= row["game_reward"] <= 1 and row["grad_norm"] > 0
    # Same seed, same samples: only the listener differs, so the game's rewards do.
    assert row["completion_len"] == pytest.approx(plain["completion_len"])
    assert row["game_reward"] != pytest.approx(plain["game_reward"], abs=1e-6)
    with pytest.raises(ConfigError, match="listener"):
        replace(config, listener="vote")


def test_both_listeners_reward_their_mean(run_dir, tmp_path):
    from trainer.train import train

    config = load_config(run_dir.parent / "train.yaml", ["steps=1"])
    rows = {
        name: metrics(train(replace(config, listener=name, out_dir=str(tmp_path / name))))[0]
        for name in ("caption_text", "both")
    }
    plain = metrics(run_dir)[0]
    # The same samples (same seed) scored by each listener; "both" averages the two games' rewards.
    expected = (rows["caption_text"]["game_reward"] + plain["game_reward"]) / 2
    assert rows["both"]["game_reward"] == pytest.approx(expected, abs=1e-6)


def test_the_description_game_plays_tagging_s_way_round(run_dir, tmp_path):
    """game = description: the same samples (same seed) scored by the photos picking among descriptions."""
    from trainer.train import train

    config = load_config(run_dir.parent / "train.yaml", [f"out_dir={tmp_path / 'description'}", "steps=1"])
    row = metrics(train(replace(config, game="description")))[0]
    plain = metrics(run_dir)[0]
    assert 0 <= row["listener_acc"] <= 1 and 0 <= row["game_reward"] <= 1 and row["grad_norm"] > 0
    assert row["completion_len"] == pytest.approx(plain["completion_len"])
    assert row["game_reward"] != pytest.approx(plain["game_reward"], abs=1e-6)
    with pytest.raises(ConfigError, match="game"):
        replace(config, game="tagging")
    with pytest.raises(ConfigError, match="listener = yes_no or caption_text"):
        replace(config, game="description", listener="caption")
    # Its caption listener compares the descriptions on each photo by their likelihood per token: other rewards.
    caption = metrics(train(replace(config, game="description", listener="caption_text",
                                    out_dir=str(tmp_path / "caption"))))[0]  # fmt: skip
    assert 0 <= caption["game_reward"] <= 1 and caption["grad_norm"] > 0
    assert caption["completion_len"] == pytest.approx(plain["completion_len"])
    assert caption["game_reward"] != pytest.approx(row["game_reward"], abs=1e-6)


def test_caption_rivals_are_read_by_their_likelihood_per_token(run_dir, tmp_path, monkeypatch):
    """listener = caption_text: photo k against rival r is exp(mean log P(token) of r as the runtime re-reads it)."""
    import math

    from rrg_local.vlm.prompts import CAPTION_OPEN, parse_description, speaker_answer
    from trainer import grpo
    from trainer.train import _open, rival_descriptions, setup

    config = load_config(run_dir.parent / "train.yaml", [f"out_dir={tmp_path / 'run'}", "K=3", "game=description",
                                                         "listener=caption_text"])  # fmt: skip
    session = setup(config)
    model, tok, proc = session.model, session.tokenizer, session.processor
    texts: list[str] = []
    real_greedy = grpo.greedy
    monkeypatch.setattr(grpo, "greedy", lambda *a, **k: texts.append(real_greedy(*a, **k)) or texts[-1])
    game = session.games[0]
    images = [_open(c.path) for c in game.candidates]
    rivals, owners = rival_descriptions(session, game, images)
    negatives = [c for k, c in enumerate(game.candidates) if k != game.answer]
    assert len(texts) == 2 and all(len(row) == 2 and all(0 < p < 1 for p in row) for row in rivals)
    for k, image in enumerate(images):
        for r, (text, negative) in enumerate(zip(texts, negatives, strict=True)):
            summed = grpo.listener_caption_logprobs(model, tok, proc, image, grpo.text_rollout(tok, [text]),
                                                    negative.category, CAPTION_OPEN)[0]  # fmt: skip
            coarse, detailed = parse_description(text)
            answer = speaker_answer(coarse, detailed).removeprefix(CAPTION_OPEN) if coarse and detailed else None
            n = len(tok(answer, add_special_tokens=False).input_ids) if answer else len(tok(text).input_ids) + 1
            assert rivals[k][r] == pytest.approx(math.exp(summed / n), rel=1e-5)


def test_rivals_are_described_from_another_photo_of_their_concept(run_dir, tmp_path, monkeypatch):
    from trainer import train as train_module
    from trainer.train import rival_descriptions, setup

    config = load_config(run_dir.parent / "train.yaml", [f"out_dir={tmp_path / 'run'}", "K=3", "game=description"])
    session = setup(config)
    opened: list[Path] = []
    real_open = train_module._open
    monkeypatch.setattr(train_module, "_open", lambda path: opened.append(Path(path)) or real_open(path))
    for game in session.games[:3]:
        images = [real_open(c.path) for c in game.candidates]
        opened.clear()
        rivals, owners = rival_descriptions(session, game, images)
        assert owners[game.answer] == -1 and sorted(o for o in owners if o != -1) == [0, 1]
        assert len(rivals) == 3 and all(len(row) == 2 and all(0 < p < 1 for p in row) for row in rivals)
        negatives = [c for k, c in enumerate(game.candidates) if k != game.answer]
        described = opened  # the photos the speaker described the rivals from (the candidates come opened)
        for photo, negative in zip(described, negatives, strict=True):
            assert photo in session.photos[negative.concept] and photo != Path(negative.path)


def test_a_game_without_rivals_is_played_the_photo_way(run_dir, tmp_path):
    """Negatives of no concept (a person's rejected photos) have no description to rival the sampled one."""
    from trainer.data import Example, Game
    from trainer.train import play_step, setup

    config = load_config(run_dir.parent / "train.yaml", [f"out_dir={tmp_path / 'run'}"])
    game = setup(config).games[0]
    rejected = Game(game.target, tuple(c if k == game.answer else Example("", c.category, c.path)
                                       for k, c in enumerate(game.candidates)), game.answer)  # fmt: skip
    rows = {}
    for name in ("photo", "description"):
        session = setup(replace(config, game=name))
        torch.manual_seed(0)
        rows[name] = play_step(session, [rejected])
    assert rows["description"]["game_reward"] == pytest.approx(rows["photo"]["game_reward"], abs=1e-9)
    assert rows["description"]["listener_acc"] == rows["photo"]["listener_acc"]


def test_lookalikes_choose_the_games_negatives(run_dir, tmp_path):
    """K = 2: one negative per game, which comes from the concept the look-alikes file names (here always the
    other category's, which the similarity mining never picks while the category has another concept)."""
    from trainer.train import setup

    swap = {"mug_red": ["dog_bo"], "mug_blue": ["dog_rex"], "dog_bo": ["mug_blue"], "dog_rex": ["mug_red"]}
    (tmp_path / "lookalikes.json").write_text(json.dumps(swap))
    config = load_config(run_dir.parent / "train.yaml", [f"out_dir={tmp_path / 'run'}"])
    plain = setup(config).games
    games = setup(replace(config, lookalikes=str(tmp_path / "lookalikes.json"))).games
    assert [g.target for g in games] == [g.target for g in plain]
    for game, before in zip(games, plain, strict=True):
        negative = next(c for j, c in enumerate(game.candidates) if j != game.answer)
        assert negative.concept == swap[game.target.concept][0]
        assert next(c for j, c in enumerate(before.candidates) if j != before.answer).category == game.target.category


def test_games_cover_each_epoch_once():
    from trainer.train import games_for_step

    games = list(range(5))
    picked = [g for step in range(1, 6) for g in games_for_step(games, step, 2, seed=0)]  # two epochs
    assert sorted(picked[:5]) == games and sorted(picked[5:]) == games
    assert games_for_step(games, 3, 2, seed=0) == picked[4:6]


def test_overrides_are_coerced(config_file):
    config = load_config(config_file, ["lr=3e-4", "K=3", "gradient_checkpointing=true", "name=null"])
    assert (config.lr, config.K, config.gradient_checkpointing, config.name) == (3e-4, 3, True, None)
    assert config.group_size == SMALL["group_size"]  # untouched keys keep the file's values
    assert isinstance(load_config(config_file, ["lr=1"]).lr, float)


def test_unknown_keys_and_bad_values_raise(config_file, tmp_path):
    with pytest.raises(ConfigError, match="unknown config key.*learning_rate"):
        load_config(config_file, ["learning_rate=1e-4"])
    with pytest.raises(ConfigError, match="steps"):
        load_config(config_file, ["steps=many"])
    with pytest.raises(ConfigError, match="reward"):
        load_config(None, ["reward=cosine"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 1e-4\nbatch: 8\n")
    with pytest.raises(ConfigError, match="batch"):
        load_config(bad)
    assert load_config(None) == TrainConfig()


def test_4bit_needs_cuda(config_file):
    from trainer.train import load_model

    if torch.cuda.is_available():
        pytest.skip("this checks the CPU refusal")
    with pytest.raises(ConfigError, match="CUDA"):
        load_model(load_config(config_file, ["load_in_4bit=true", "device=cpu"]), None)


def test_the_run_exports(run_dir):
    from trainer.export import export_run

    result = export_run(run_dir, quant=())
    assert result.text.is_file() and result.mmproj.is_file() and result.lora is not None and result.lora.is_file()


def test_cli_help_and_config_errors(config_file):
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0 and "--config" in result.output
    result = CliRunner().invoke(main, ["train", "--config", str(config_file), "nope=1"])
    assert result.exit_code == 1 and "unknown config key(s): nope" in result.output


def test_cli_train_prints_the_export_command(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)  # already at steps=2: the command resumes, has nothing to do, and reports
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(main, ["train", "--config", str(run_dir.parent / "train.yaml"), f"out_dir={copy}"])
    assert result.exit_code == 0, result.output
    assert f"rrg-train export {copy}" in result.output
    assert len(metrics(copy)) == 2
    # peft's deprecation warning about transformers (the adapter was loaded to resume) is not the user's business
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
