"""`rrg-train eval`: the metrics on values, and zero-shot vs trained end to end on HF and GGUF for a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import BENCH_CATEGORIES as CATEGORIES
from tests.conftest import SMALL_TRAIN as SMALL
from tests.conftest import write_benchmark
from trainer.cli import main
from trainer.eval import caption_hit, format_table, game_accuracy, identification_accuracy, recognition_metrics

# Measured on the tiny run: HF (f32) and the runtime (f16 GGUF) differ by at most 1.2e-4 in P(Yes).
P_YES_TOLERANCE = 1e-3

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.mark.parametrize(
    ("p_yes", "labels", "expected"),
    [
        ([[0.9, 0.1], [0.2, 0.8]], [0, 1], (1.0, 1.0, 1.0)),  # perfect
        ([[0.1, 0.9], [0.8, 0.2]], [0, 1], (0.0, 0.0, 0.0)),  # inverted
        ([[0.5, 0.5], [0.5, 0.5]], [0, 1], (1.0, 0.0, 0.5)),  # 0.5 counts as Yes
        ([[0.9, 0.6, 0.1], [0.9, 0.2, 0.3], [0.4, 0.4, 0.7]], [0, 0, 2], (1.0, 5 / 6, 11 / 12)),  # 0.6 on a negative
        ([[0.2, 0.1, 0.1]], [0], (0.0, 1.0, 0.5)),
    ],
)
def test_recognition_metrics(p_yes, labels, expected):
    assert recognition_metrics(np.array(p_yes), labels) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("targets", "candidates", "answers", "expected"),
    [
        ([0, 1, 2], [[0, 1, 2], [0, 1, 2], [0, 1, 2]], [0, 1, 2], 2 / 3),  # photo 1 picks concept 0 (0.9 > 0.2)
        ([0], [[2, 1, 0]], [2], 1.0),  # the answer is an index into the candidates, not a concept
        ([1], [[1, 2]], [0], 0.0),  # 0.3 > 0.2: concept 2 is picked
        ([2, 2], [[0, 1], [1, 0]], [0, 0], 1.0),  # a tie goes to the first candidate
    ],
)
def test_identification_accuracy(targets, candidates, answers, expected):
    p = np.array([[0.9, 0.6, 0.1], [0.9, 0.2, 0.3], [0.4, 0.4, 0.7]])
    assert identification_accuracy(p, targets, candidates, answers) == pytest.approx(expected)


def test_the_game_orientation_fixes_the_description_and_compares_photos():
    # Photo 0 shows concept 0, photo 1 concept 1. Concept 1's vague description fits photo 0 best of all (0.95):
    # asked which description fits photo 0 (tagging's way), the listener picks concept 1; asked which photo
    # concept 0's description fits (the game RRG plays), it picks photo 0.
    p = np.array([[0.9, 0.95], [0.2, 0.6]])
    assert identification_accuracy(p, [0], [[0, 1]], [0]) == 0.0
    assert game_accuracy(p, [0], [[0, 1]], [0]) == 1.0
    assert game_accuracy(p, [1], [[0, 1]], [1]) == 0.0  # concept 1's description: 0.95 on photo 0 > 0.6
    assert game_accuracy(p, [0, 1], [[1, 0], [0, 1]], [1, 1]) == 0.5  # candidate order is the answer's index


def test_the_game_way_round_leaves_out_games_whose_candidates_hold_the_described_photo():
    # Concept a was described from a1 (its first photo). A listener that finds a1's own scene in the description
    # (0.99) would win the game whose positive candidate is a1 for that reason alone: that game is left out.
    from trainer.data import Example, Game
    from trainer.eval import evaluate_games

    a1, a2, b1, b2 = (
        Example(c, "mug", Path(f"/photos/{c}{i}.jpg")) for c, i in (("a", 1), ("a", 2), ("b", 1), ("b", 2))
    )
    p = {("a1", "a"): 0.99, ("a2", "a"): 0.5, ("b1", "a"): 0.6, ("b2", "a"): 0.6,
         ("a1", "b"): 0.2, ("a2", "b"): 0.2, ("b1", "b"): 0.9, ("b2", "b"): 0.8}  # fmt: skip

    class Listener:  # P(Yes) by (photo, described concept); no captions
        def p_yes(self, path, concept):
            return p[(Path(path).stem, concept.name)]

        def caption(self, path, candidates):
            return None

    games = [Game(a2, (a1, b1), 0), Game(a1, (b2, a2), 1), Game(b1, (a1, b2), 1)]
    descriptions = {"a": ("A photo of a mug.", "The mug on the beach."), "b": ("A photo of a mug.", "A mug.")}
    metrics, _ = evaluate_games(Listener(), [a1, a2, b1, b2], games, descriptions)
    assert metrics.game_games == 2  # the first game's positive is a1, the photo a was described from
    # The second: a's description fits b2 (0.6) better than a2 (0.5), lost; the third: b's on b2 (0.8) > a1 (0.2).
    assert metrics.game_identification == 0.5
    # Centred on each photo's mean logit (b2 says Yes to anything, a2 to little), a2 wins the second game too.
    assert metrics.game_identification_centred == 1.0


def test_caption_hit_needs_the_name_in_angle_brackets():
    assert caption_hit("A photo of <mug_red> on a desk.", "mug_red")
    assert not caption_hit("A photo of mug_red on a desk.", "mug_red")
    assert not caption_hit("A photo of <mug_red2>.", "mug_red")


def test_table_prints_none_as_a_dash():
    metrics = {"positive": 1.0, "negative": 0.25, "weighted": 0.625, "identification": 0.5, "captioning": None,
               "context": 0.25}  # fmt: skip
    table = format_table({"zero-shot": {"metrics": metrics}, "trained": {"metrics": {**metrics, "captioning": 0.5}}})
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "zero-shot", "trained"]
    assert lines[-2].split() == ["captioning", "-", "0.500"]
    assert lines[-1].split() == ["context", "0.250", "0.250"]


# ---- a tiny run, trained two steps ---------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from trainer.config import load_config
    from trainer.train import train

    root = tmp_path_factory.mktemp("evalbench")
    write_benchmark(root)
    values = {
        "base": str(tiny.hf_dir),
        "data_root": str(root / "photos"),
        "categories": str(root / "categories.csv"),
        "out_dir": str(root / "run"),
        "name": "tiny-rrg",
        "pre_tokenizer": "qwen2",
        "test_fraction": 0.5,
        "steps": 2,
        "lr": 0.01,
        "save_every": 2,
        **SMALL,
    }
    (root / "train.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()))
    torch.set_num_threads(1)
    return train(load_config(root / "train.yaml"))


@pytest.fixture(scope="module")
def result(run_dir) -> dict:
    from trainer.eval import evaluate_run

    return evaluate_run(run_dir, gguf=True, all_concepts=True, max_tokens=16, k=3, n_threads=1)


def test_eval_reports_every_metric_on_both_backends(result, run_dir):
    columns = result["columns"]
    assert list(columns) == ["hf zero-shot", "hf trained", "gguf zero-shot", "gguf trained"]
    assert result["n_photos"] == 12 and len(result["concepts"]) == 4
    for name, column in columns.items():
        m = column["metrics"]
        assert m["n_pairs"] == 12 * 4 and m["n_games"] == 12
        for key in ("positive", "negative", "weighted", "identification"):
            assert 0.0 <= m[key] <= 1.0, (name, key)
        assert m["weighted"] == pytest.approx((m["positive"] + m["negative"]) / 2)
        # The game's way round: the 4 games of the described photos at least (no candidate is their own photo).
        assert 4 <= m["game_games"] <= 12 and 0.0 <= m["game_identification"] <= 1.0
        assert 0.0 <= m["captioning"] <= 1.0  # both backends caption (the HF one replays the runtime's script)
        assert set(column["descriptions"]) == set(CATEGORIES)
        # Per game, P(Yes) of each candidate's description on the target photo: what identification picks from.
        assert len(column["game_p_yes"]) == 12 and all(len(r) == 3 for r in column["game_p_yes"])
        assert all(0.0 <= p <= 1.0 for r in column["game_p_yes"] for p in r)
    # The trained speaker is the adapter: its descriptions are not the base's.
    assert columns["hf trained"]["descriptions"] != columns["hf zero-shot"]["descriptions"]
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["columns"]["gguf trained"]["metrics"] == columns["gguf trained"]["metrics"]


def test_hf_and_gguf_listeners_agree_on_the_same_descriptions(result, run_dir, tiny):
    """Same prompts on both sides (the runtime's recognition prompt); descriptions taken from one backend."""
    from trainer.eval import GGUFBackend, HFBackend, base_gguf, eval_data, p_yes_matrix

    run = json.loads((run_dir / "run.json").read_text())
    data = eval_data(Path(run["config"]["data_root"]), Path(run["config"]["categories"]), all_concepts=True)
    for column in ("hf trained", "gguf zero-shot"):
        descriptions = {c: tuple(d) for c, d in result["columns"][column]["descriptions"].items()}
        hf, _, _ = p_yes_matrix(HFBackend(tiny.hf_dir, run_dir / "adapter"), data.examples, descriptions)
        pair = base_gguf(run_dir, run)
        gguf = GGUFBackend.open(pair.text, pair.mmproj, n_threads=1)
        try:
            ours, _, _ = p_yes_matrix(gguf, data.examples, descriptions)
        finally:
            gguf.close()
        assert np.abs(hf - ours).max() < P_YES_TOLERANCE
        assert ((hf >= 0.5) == (ours >= 0.5)).mean() >= 0.9
        assert hf.std() > P_YES_TOLERANCE  # not constant: photos and descriptions move P(Yes)


def test_gguf_lora_speaker_matches_the_merged_one(result, run_dir):
    from trainer.eval import evaluate_run

    lora = evaluate_run(run_dir, gguf=True, gguf_lora=True, hf=False, all_concepts=True, max_tokens=16, k=3,
                        n_threads=1, write=False)  # fmt: skip
    assert lora["columns"]["gguf trained"]["descriptions"] == result["columns"]["gguf trained"]["descriptions"]


def test_test_split_follows_the_run(run_dir):
    from trainer.data import load_examples, split_by_concept
    from trainer.eval import eval_data

    run = json.loads((run_dir / "run.json").read_text())["config"]
    data = eval_data(Path(run["data_root"]), Path(run["categories"]), test_fraction=0.5, seed=0, k=3)
    _, test = split_by_concept(load_examples(Path(run["data_root"]), Path(run["categories"])), 0.5, 0)
    assert data.examples == test and len({e.concept for e in test}) == 2
    assert all(len(g.candidates) == 2 for g in data.games)  # K shrinks to the concepts available


def test_cli_eval_prints_the_table(run_dir):
    assert "--all-concepts" in CliRunner().invoke(main, ["eval", "--help"]).output
    result = CliRunner().invoke(main, ["eval", "--run", str(run_dir), "--max-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert "2 concepts, 6 photos" in result.output  # the run's test split
    assert "hf zero-shot" in result.output and "weighted" in result.output
    result = CliRunner().invoke(main, ["eval", "--run", str(run_dir), "--no-hf"])
    assert result.exit_code == 1 and "nothing to evaluate" in result.output
    result = CliRunner().invoke(main, ["eval", "--run", str(run_dir.parent)])
    assert result.exit_code == 1 and "run.json is missing" in result.output
