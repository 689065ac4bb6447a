"""`rrg-train export`: a LoRA run becomes a GGUF pair that the runtime loads and that matches PEFT."""

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.set_num_threads(1)
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    base = AutoModelForImageTextToText.from_pretrained(tiny.hf_dir, dtype=torch.float32)
    targets = r"^model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)$"
    # init_lora_weights=False: random A and B, so the adapter really changes the model.
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False))
    peft_model.save_pretrained(run / "adapter")
    (run / "run.json").write_text(json.dumps({"base": str(tiny.hf_dir), "name": "tiny-rrg", "pre_tokenizer": "qwen2"}))
    return run


def hf_logits(model_dir, adapter_dir, ids):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        out = model(input_ids=x, attention_mask=torch.ones_like(x), mm_token_type_ids=torch.zeros_like(x))
    return out.logits[0, -1].numpy()


def test_export_matches_peft_and_loads_in_the_runtime(run_dir, tiny):
    from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel
    from rrg_local.vlm.prompts import question
    from trainer.export import export_run

    result = export_run(run_dir, quant=("Q8_0",))
    manifest = json.loads(result.manifest.read_text())
    assert set(manifest["files"]) == {"text", "mmproj", "text_Q8_0", "lora"}
    for entry in manifest["files"].values():
        assert len(entry["sha256"]) == 64 and entry["bytes"] > 0
    assert (run_dir / "adapter" / "adapter_config.json").exists()  # the adapter is kept
    msgs = question(None, "What is in this photo?")
    with LlamaVisionModel(LlamaConfig(model=result.text, mmproj=result.mmproj, n_threads=1)) as m:
        ids = m.tokenize(m.render(msgs), special=True)
        gguf = m.next_token_logits(msgs)
    peft = hf_logits(tiny.hf_dir, run_dir / "adapter", [int(i) for i in ids])
    base = hf_logits(tiny.hf_dir, None, [int(i) for i in ids])
    assert np.abs(peft - base).max() > 20 * np.abs(gguf - peft).max()  # the adapter matters, the export keeps it
    assert np.abs(gguf - peft).max() < 2e-3  # f16 GGUF vs PEFT in f32 (the tiny model's logit std is ~0.2)
    # The adapter alone, applied by llama.cpp at load time on the base GGUF, gives the merged model's logits.
    base_pair = tiny.pair("f16")
    with LlamaVisionModel(
        LlamaConfig(model=base_pair.text, mmproj=base_pair.mmproj, n_threads=1, lora=result.lora)
    ) as m:
        applied = m.next_token_logits(msgs)
    assert np.abs(applied - gguf).max() < 2e-3
    assert result.add_command().startswith(f"rrg model add tiny-rrg --gguf {result.quantized['Q8_0']}")


def test_export_cli_errors_name_the_problem(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "export", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1 and f"not a training run: {tmp_path}/run.json is missing" in out.stderr


def test_registry_applies_an_exported_lora(run_dir, tiny, settings):
    from rrg_local.vlm import registry
    from rrg_local.vlm.prompts import question
    from trainer.export import export_run

    result = export_run(run_dir, quant=())
    base = tiny.pair("f16")
    with pytest.raises(registry.RegistryError, match="is not a GGUF adapter"):
        registry.add(settings, "bad", base.text, base.mmproj, lora=base.text)
    registry.add(settings, "tiny-rrg", base.text, base.mmproj, lora=result.lora)
    msgs = question(None, "What is in this photo?")
    with registry.open_model(settings, n_threads=1) as with_lora, registry.open_model(settings, n_threads=1) as again:
        a, b = with_lora.next_token_logits(msgs), again.next_token_logits(msgs)
    from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel

    with LlamaVisionModel(LlamaConfig(model=result.text, mmproj=result.mmproj, n_threads=1)) as merged:
        m = merged.next_token_logits(msgs)
    assert np.array_equal(a, b) and np.abs(a - m).max() < 2e-3


def test_speaker_scoped_lora_changes_describing_only(run_dir, tiny, settings):
    from rrg_local.vlm import registry
    from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel
    from rrg_local.vlm.prompts import question
    from rrg_local.vlm.protocol import Force
    from trainer.export import export_run

    result = export_run(run_dir, quant=())
    base = tiny.pair("f16")
    registry.add(settings, "tiny-speaker", base.text, base.mmproj, lora=result.lora, lora_scope="speaker", use=True)
    assert registry.get(settings).lora_scope == "speaker"
    msgs = question(None, "What is in this photo?")
    with LlamaVisionModel(LlamaConfig(model=base.text, mmproj=base.mmproj, n_threads=1)) as plain:
        want_base = plain.next_token_logits(msgs)
    with LlamaVisionModel(LlamaConfig(model=result.text, mmproj=result.mmproj, n_threads=1)) as merged:
        want_lora = merged.next_token_logits(msgs)
    with registry.open_model(settings, n_threads=1) as m:
        # listener, speaker, listener again: each switch drops the KV cache computed with the other weights
        got = [m.run_logits(msgs, [Force("")], role=r) for r in ("listener", "speaker", "listener", "speaker")]
    assert np.abs(got[0] - want_base).max() < 1e-4 and np.abs(got[2] - want_base).max() < 1e-4
    assert np.abs(got[1] - want_lora).max() < 2e-3 and np.abs(got[3] - want_lora).max() < 2e-3
    assert np.abs(want_lora - want_base).max() > 1e-2


def test_lora_gguf_carries_no_build_path_and_converts_the_same_from_any_folder(run_dir, tiny, tmp_path):
    import shutil

    from rrg_local.vlm.gguf_meta import file_sha256, read_metadata
    from trainer.gguf import convert_lora

    assert str(tiny.hf_dir) in (run_dir / "adapter" / "README.md").read_text()  # peft wrote the local path there
    moved = tmp_path / "elsewhere" / "adapter"
    shutil.copytree(run_dir / "adapter", moved)
    a = convert_lora(tiny.hf_dir, run_dir / "adapter", tmp_path / "a.gguf")
    b = convert_lora(tiny.hf_dir, moved, tmp_path / "b.gguf")
    meta = read_metadata(a)
    assert meta["general.type"] == "adapter" and meta["adapter.type"] == "lora"
    assert not [k for k, v in meta.items() if "/" in str(v) or k.startswith("general.base_model")]
    assert file_sha256(a) == file_sha256(b)
    assert json.loads((run_dir / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]


def test_convert_lora_names_a_folder_that_is_no_adapter(tiny, tmp_path):
    from trainer.gguf import ConversionError, convert_lora

    with pytest.raises(ConversionError, match="not a peft LoRA adapter: .*adapter_config.json is missing"):
        convert_lora(tiny.hf_dir, tmp_path, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()
