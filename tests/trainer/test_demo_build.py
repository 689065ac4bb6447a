"""`trainer.demo_build`'s overrides: what `rrg-train demo-model ... key=value` accepts, read before any stage runs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from trainer.config import ConfigError
from trainer.demo_build import FAST, BuildConfig, config_with


def test_rrg_overrides_are_typed_as_the_trainer_reads_them():
    config = config_with(("rrg.seed=3", "rrg.lr=3e-4", "rrg.steps=12", "bench_concepts=144", "listener.steps=7"))
    assert config.rrg["seed"] == 3 and config.rrg["lr"] == 3e-4 and config.rrg["steps"] == 12
    assert config.bench_concepts == 144 and config.listener.steps == 7
    assert {k: v for k, v in config.rrg.items() if k not in ("seed", "lr", "steps")} == {
        k: v for k, v in BuildConfig().rrg.items() if k not in ("lr", "steps")
    }


@pytest.mark.parametrize(
    ("override", "says"),
    [("rrg.sed=1", "rrg.sed: not an RRG setting"), ("rrg.base=/x", "rrg.base: not an RRG setting"),
     ("rrg.steps=1.5", "rrg.steps: cannot read '1.5' as int")],
)  # fmt: skip
def test_a_wrong_rrg_override_is_refused_before_anything_runs(tmp_path, override, says):
    with pytest.raises(ConfigError, match=says):
        config_with((override,))
    from trainer.cli import main

    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["demo-model", "--out", str(run), override])
    assert result.exit_code != 0 and f"bad override: {says}" in result.output and not run.exists()


def test_fast_changes_only_how_stage_b_runs_and_later_overrides_win(tmp_path):
    """`--fast`: both stage-B phases compiled, in passes cut by length; the recipe (steps, rates, mixes) the
    shipped one's; an override after it wins."""
    from dataclasses import asdict

    fast, stock = config_with(FAST), BuildConfig()
    for phase in ("pretrain", "listener"):
        mine, theirs = asdict(getattr(fast, phase)), asdict(getattr(stock, phase))
        assert mine["compile"] and mine["length_batches"] and not theirs["compile"] and not theirs["length_batches"]
        changed = {k for k in mine if mine[k] != theirs[k]}
        assert changed == {"compile", "length_batches", "micro_batches"}
    assert fast.rrg == stock.rrg
    assert config_with((*FAST, "listener.micro_batches=2")).listener.micro_batches == 2
    from trainer.cli import main

    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["demo-model", "--fast", "--out", str(run), "listener.nope=1"])
    assert result.exit_code != 0 and "bad override" in result.output and not run.exists()


def test_the_build_record_names_the_cpu_features_and_caps_that_choose_its_kernels(monkeypatch):
    # The same short build differs in its floats with oneDNN capped below the CPU's AVX512-BF16 and not across
    # transformers / Pillow / NumPy versions: the record must say which instruction sets and caps were in force.
    from pathlib import Path

    from trainer.hardware import ISA_FLAGS, machine

    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    record = machine()
    assert record.endswith("ONEDNN_MAX_CPU_ISA=AVX2") and "ATEN_CPU_CAPABILITY" not in record
    cpu = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in cpu.splitlines() if line.startswith("flags")).partition(":")[2].split())
    for flag in ISA_FLAGS:
        assert (f" {flag}" in f" {record.replace(',', ' ')}") == (flag in flags), flag
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert "ONEDNN" not in machine()
