"""Data-parallel `rrg-train train` under torchrun: two CPU processes (gloo) play one step of two games.

Each process samples its own game with its own RNG stream, so the step cannot equal a single process's step on
the same two games bit for bit; what is asserted is that the gradients were averaged (both processes end with
identical LoRA weights, which are also the saved adapter's) and that process 0 alone wrote the run folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SMALL_TRAIN as SMALL
from tests.conftest import write_benchmark

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_file(tmp_path, tiny) -> Path:
    write_benchmark(tmp_path)
    values = {
        "base": str(tiny.hf_dir),
        "data_root": str(tmp_path / "photos"),
        "categories": str(tmp_path / "categories.csv"),
        "out_dir": str(tmp_path / "run"),
        "test_fraction": 0.0,
        "steps": 1,
        "lr": 0.01,
        "device": "cpu",
        **SMALL,
    }
    path = tmp_path / "train.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()))
    return path


def test_two_processes_average_gradients_and_write_once(config_file, tmp_path):
    from safetensors.torch import load_file

    from trainer.train import METRIC_KEYS

    dump = tmp_path / "dump"
    env = {**os.environ, "RRG_TRAIN_DUMP_TRAINABLE": str(dump), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainer.cli", "train", "--config", str(config_file)]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    run_dir = tmp_path / "run"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # process 1 wrote nothing
    row = json.loads(lines[0])
    assert row["step"] == 1 and set(METRIC_KEYS) <= set(row) and row["grad_norm"] > 0
    state = torch.load(run_dir / "state.pt", weights_only=False)
    assert state["step"] == 1 and len(state["rng_ranks"]) == 2

    ranks = [torch.load(dump / f"rank{r}.pt") for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys() and ranks[0]
    for name, weight in ranks[0].items():
        assert torch.equal(weight, ranks[1][name]), name  # the averaged gradient made the same update
    assert any(w.abs().max() > 0 for n, w in ranks[0].items() if "lora_B" in n)  # peft initialises B to zero
    saved = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert len(saved) == len(ranks[0])
    for name, weight in ranks[0].items():
        assert torch.equal(saved[name.replace(".default.", ".")], weight), name
