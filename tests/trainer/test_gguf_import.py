"""`trainer.gguf_import`: a GGUF pair read back into an HF folder holds the weights it was converted from."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _state(folder):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).state_dict()


def _tensors(path):
    from trainer.gguf_import import _reader

    return {t.name: (t.tensor_type, np.array(t.data)) for t in _reader(path, None).tensors}


def test_the_f32_pair_gives_back_every_weight_exactly(tiny, tmp_path):
    from trainer.gguf_import import hf_from_gguf

    out = hf_from_gguf(tiny.text["f32"], tiny.mmproj["f32"], tiny.hf_dir, tmp_path / "hf")
    original, recovered = _state(tiny.hf_dir), _state(out)
    assert original.keys() == recovered.keys()
    differ = [k for k in original if not torch.equal(original[k], recovered[k])]
    assert differ == []
    assert (out / "tokenizer.json").read_bytes() == (tiny.hf_dir / "tokenizer.json").read_bytes()


def test_the_f16_pair_converts_back_to_the_same_tensors(tiny, tmp_path):
    from trainer.gguf import convert
    from trainer.gguf_import import hf_from_gguf

    out = hf_from_gguf(tiny.text["f16"], tiny.mmproj["f16"], tiny.hf_dir, tmp_path / "hf")
    original, recovered = _state(tiny.hf_dir), _state(out)
    changed = [k for k in original if not torch.equal(original[k], recovered[k])]
    assert changed, "f16 rounding should change some matrices"
    for k in changed:  # only by rounding: each weight is its f16 value
        assert torch.equal(recovered[k], original[k].half().float()), k
    pair = convert(out, tmp_path / "again", "f16", name="again", fallback_pre="qwen2")
    for new, old in ((pair.text, tiny.text["f16"]), (pair.mmproj, tiny.mmproj["f16"])):
        a, b = _tensors(new), _tensors(old)
        assert a.keys() == b.keys()
        assert [n for n in a if a[n][0] != b[n][0] or not np.array_equal(a[n][1], b[n][1])] == []


def test_a_file_that_does_not_fit_is_a_one_line_error(tiny, tmp_path):
    from trainer.gguf_import import GGUFImportError, hf_from_gguf

    with pytest.raises(GGUFImportError, match="unexpected tensor v\\.") as err:
        hf_from_gguf(tiny.mmproj["f16"], tiny.mmproj["f16"], tiny.hf_dir, tmp_path / "hf")
    assert "\n" not in str(err.value)
    with pytest.raises(GGUFImportError, match="patch embedding"):
        hf_from_gguf(tiny.text["f16"], tiny.text["f16"], tiny.hf_dir, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_the_rrg_stage_reruns_on_the_shipped_base(tmp_path):
    """`rrg-train demo-model --from-shipped`: no pre-training; RRG on the shipped GGUF pair read back (its
    export: the shipped tower, and the shipped text model where the merged LoRA did not change it)."""
    import json

    from click.testing import CliRunner

    from trainer import demo_build
    from trainer.cli import main

    torch.set_num_threads(1)
    run = tmp_path / "run"
    for flag in ("--ship", "--pretrain-only"):
        refused = CliRunner().invoke(main, ["demo-model", "--out", str(run), "--from-shipped", flag])
        assert refused.exit_code != 0 and "not shipped" in refused.output and not run.exists()
    args = ["demo-model", "--out", str(run), "--from-shipped", "rrg.steps=2", "bench_concepts=6", "rrg.save_every=1",
            "rrg.seed=5"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads((run / "build.json").read_text())
    assert record["from_shipped"] and not (run / "pretrain").exists() and not (run / "listener").exists()
    assert len(demo_build.read_metrics_rrg(run / "rrg")) == 2
    assert json.loads((run / "rrg" / "run.json").read_text())["config"]["seed"] == 5  # `rrg.seed`: another RRG run
    assert record["base_text"] == str(demo_build.SHIPPED / demo_build.TEXT_NAME)
    a, b = _tensors(record["mmproj"]), _tensors(demo_build.SHIPPED / demo_build.MMPROJ_NAME)
    assert a.keys() == b.keys() and all(np.array_equal(a[n][1], b[n][1]) for n in a)
    a, b = _tensors(record["text"]), _tensors(record["base_text"])
    changed = {n for n in a if not np.array_equal(a[n][1], b[n][1])}
    assert changed and all(n.startswith("blk.") and n.endswith(".weight") and "norm" not in n for n in changed)
    # `ship` to another folder: a manifest the runtime's loader accepts, with what the floats depend on.
    from rrg_local.demo.run import shipped_model

    manifest = json.loads(demo_build.ship(run, tmp_path / "shipped").read_text())
    assert shipped_model(tmp_path / "shipped").text == tmp_path / "shipped" / demo_build.TEXT_NAME
    assert manifest["machine"] == record["machine"] and "cores" in manifest["machine"]
    assert {"torch", "transformers", "pillow", "numpy"} <= manifest["versions"].keys()
