"""The `rrg-train` command. Heavy imports stay inside subcommands so `--help` is instant."""

from __future__ import annotations

import warnings
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train and export RRG speaker adapters (install the `train` extra)."""
    # peft reads `is_gradient_checkpointing`, which transformers 5.2x deprecates: one FutureWarning per model
    # wrapped in a LoRA, about code that is not ours, in every run's output.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


@main.command("fetch-converter")
@click.option(
    "--sdist",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An already downloaded llama_cpp_python-<version>.tar.gz (skips pip download).",
)
def fetch_converter_cmd(sdist: Path | None) -> None:
    """Set-up step (needs PyPI): cache llama.cpp's GGUF converter for the installed llama-cpp-python."""
    import tarfile

    from trainer.gguf import ConverterMissing, fetch_converter

    try:
        path = fetch_converter(sdist=sdist)
    except (ConverterMissing, OSError, tarfile.TarError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(path)


@main.command("tiny")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Also copy the HF folder here.")
@click.option("--quant", multiple=True, default=("Q8_0", "Q4_K_M"), show_default=True, help="Text quant types.")
def tiny_cmd(out: Path | None, quant: tuple[str, ...]) -> None:
    """Build (or reuse from the cache) the tiny random Qwen2-VL test model and print its paths."""
    import shutil

    from trainer.gguf import ConversionError, ConverterMissing
    from trainer.tiny import tiny_gguf

    try:
        model = tiny_gguf(quant=tuple(quant))
    except (ConverterMissing, ConversionError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"hf\t{model.hf_dir}")
    for kind, files in (("text", model.text), ("mmproj", model.mmproj)):
        for dtype, path in files.items():
            click.echo(f"{kind}:{dtype}\t{path}")
    if out is not None:
        shutil.copytree(model.hf_dir, out, dirs_exist_ok=True)
        click.echo(f"copied\t{out}")


@main.command("demo-model", context_settings={"ignore_unknown_options": True})
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="The build folder.")
@click.option("--ship", is_flag=True, help="Copy the result into rrg_local/demo/model with its manifest.")
@click.option("--pretrain-only", is_flag=True, help="Stop after stage A, B1 and B2 (a GPU machine).")
@click.option("--fast", is_flag=True, help="Stage B compiled, in passes cut by length (the same recipe, faster).")
@click.option(
    "--from-shipped",
    is_flag=True,
    help="Skip stage A, B1 and B2: run the RRG stage on the shipped base (its GGUF pair read back) and export.",
)
@click.argument("overrides", nargs=-1)
def demo_model_cmd(
    out: Path, ship: bool, pretrain_only: bool, fast: bool, from_shipped: bool, overrides: tuple[str, ...]
) -> None:
    """Build the demo model: pre-train on the demo world, RRG-train the speaker, export GGUF (resumable).

    OVERRIDES are key=value: pretrain.steps=2200, pretrain.batch=32, pretrain.shape.num_layers=4, rrg.steps=120,
    bench_concepts=36.
    """
    from trainer import demo_build

    try:
        config = demo_build.config_with((demo_build.FAST if fast else ()) + overrides)
    except (AttributeError, TypeError, ValueError) as exc:
        raise click.ClickException(f"bad override: {exc}") from exc
    log = lambda line: click.echo(line, err=True)  # noqa: E731
    if from_shipped and (pretrain_only or ship):
        raise click.ClickException("--from-shipped runs the stages after pre-training, and its result is not shipped")
    if from_shipped:
        from trainer.gguf import ConversionError, ConverterMissing
        from trainer.gguf_import import GGUFImportError

        try:
            base = demo_build.shipped_base(config, out)
            record = demo_build.finish(
                config, out, base, {}, log=log, base_text=demo_build.SHIPPED / demo_build.TEXT_NAME
            )
        except (ConverterMissing, ConversionError, GGUFImportError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"text\t{record['text']}\nmmproj\t{record['mmproj']}\nlora\t{record['lora']}")
        return
    if pretrain_only:
        base, timings = demo_build.pretrain_phases(config, out, log=log)
        click.echo(f"base\t{base}\ntimings\t{timings}")
        return
    record = demo_build.build(config, out, log=log)
    click.echo(f"text\t{record['text']}\nmmproj\t{record['mmproj']}")
    if ship:
        click.echo(f"shipped\t{demo_build.ship(out)}")


@main.command("demo-embedder")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="The build folder.")
@click.option("--ship", is_flag=True, help="Copy the result into rrg_local/demo/embedder with its manifest.")
@click.option("--steps", type=int, default=None, help="Training steps (default: the shipped build's).")
def demo_embedder_cmd(out: Path, ship: bool, steps: int | None) -> None:
    """Build the demo's stage-1 embedder: a CNN trained on the demo world, exported to ONNX (seeded)."""
    from dataclasses import replace

    from trainer import demo_embedder

    config = demo_embedder.EmbedderConfig()
    config = replace(config, steps=steps) if steps is not None else config
    manifest = demo_embedder.build(config, out, log=lambda line: click.echo(line, err=True))
    click.echo(f"held-out accuracy\t{manifest['held_out_accuracy']}")
    if ship:
        click.echo(f"shipped\t{demo_embedder.ship(out)}")


@main.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--quant", multiple=True, default=("Q4_K_M",), show_default=True, help="Text quantizations (repeat).")
@click.option("--outtype", default="f16", show_default=True, help="GGUF type before quantizing (f16, f32, bf16).")
@click.option("--name", default=None, help="Model name (default: the run's).")
def export_cmd(run_dir: Path, quant: tuple[str, ...], outtype: str, name: str | None) -> None:
    """Merge a run's LoRA into its base, convert to GGUF + mmproj, quantize, and print the `rrg model add` line."""
    from trainer.export import export_run

    try:
        result = export_run(run_dir, quant=quant, outtype=outtype, name=name)
    except Exception as exc:  # the CLI is where library errors become one line and an exit code
        raise click.ClickException(str(exc)) from exc
    click.echo(f"manifest: {result.manifest}")
    click.echo(result.add_command())


def _config_keys() -> str:
    from dataclasses import fields

    from trainer.config import TrainConfig  # stdlib only: cheap enough for --help

    lines = [f"  {f.name}={f.default!s}  {f.metadata['help']}" for f in fields(TrainConfig)]
    return "\b\nConfig keys (YAML or key=value), with defaults:\n" + "\n".join(lines)


@main.command("train", context_settings={"ignore_unknown_options": True}, epilog=_config_keys())
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A YAML file of TrainConfig keys.",
)
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def train_cmd(config_file: Path, overrides: tuple[str, ...]) -> None:
    """Run (or resume) RRG self-play GRPO on a benchmark layout; OVERRIDES are key=value config settings."""
    from trainer.config import ConfigError, load_config

    try:
        config = load_config(config_file, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    from trainer.train import train

    try:
        run_dir = train(config)
    except Exception as exc:  # the CLI is where library errors become one line and an exit code
        raise click.ClickException(str(exc)) from exc
    click.echo(f"run: {run_dir}")
    click.echo(f"export it: rrg-train export {run_dir}")


@main.command("export-embedder")
@click.argument("hf_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def export_embedder_cmd(hf_dir: Path, out_dir: Path) -> None:
    """Export a local CLIP/SigLIP checkpoint's vision tower to ONNX for `rrg` (set `embedder` to OUT_DIR)."""
    from trainer.tiny_clip import export_hf

    try:
        result = export_hf(hf_dir, out_dir)
    except Exception as exc:  # the CLI is where library errors become one line and an exit code
        raise click.ClickException(str(exc)) from exc
    click.echo(f"exported {result}")
    click.echo(f'use it: add  embedder = "{out_dir.absolute()}"  to config.toml in your rrg data folder')


@main.command("tiny-clip")
@click.option("--size", type=click.Choice(["tiny", "siglip", "b16"]), default="tiny", show_default=True)
def tiny_clip_cmd(size: str) -> None:
    """Build (or reuse from the cache) a random CLIP-class ONNX embedder and print its folder."""
    from trainer.tiny_clip import SIZES, tiny_clip

    click.echo(tiny_clip(SIZES[size]))


@main.command("eval")
@click.option(
    "--run",
    "run_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A training run folder (run.json + adapter/).",
)
@click.option("--gguf", is_flag=True, help="Also evaluate through the runtime (exports the run first if needed).")
@click.option("--gguf-lora", is_flag=True, help="GGUF speaker: the base GGUF + the exported LoRA, not the merge.")
@click.option("--hf/--no-hf", default=True, show_default=True, help="Evaluate with transformers + peft.")
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Benchmark layout ROOT/<concept>/<image>; default: the run's.",
)
@click.option(
    "--categories",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="concept -> category map (CSV or JSON); default: the run's.",
)
@click.option("--all-concepts", is_flag=True, help="Every concept, not only the run's test split.")
@click.option("--max-tokens", type=int, default=80, show_default=True, help="Description length cap.")
def eval_cmd(run_dir: Path, gguf: bool, gguf_lora: bool, hf: bool, data_root: Path | None, categories: Path | None,
             all_concepts: bool, max_tokens: int) -> None:  # fmt: skip
    """Zero-shot vs trained: recognition, identification, captioning recall; writes RUN_DIR/eval.json."""
    from trainer.eval import evaluate_run, format_table

    try:
        result = evaluate_run(run_dir, gguf=gguf or gguf_lora, gguf_lora=gguf_lora, hf=hf, data_root=data_root,
                              categories=categories, all_concepts=all_concepts, max_tokens=max_tokens)  # fmt: skip
    except Exception as exc:  # the CLI is where library errors become one line and an exit code
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{len(result['concepts'])} concepts, {result['n_photos']} photos")
    click.echo(format_table(result["columns"]))
    click.echo(f"written: {run_dir / 'eval.json'}")


if __name__ == "__main__":
    main()
