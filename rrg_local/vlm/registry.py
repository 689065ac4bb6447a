"""The model registry: named GGUF pairs in `models.toml` under the data home, and which one is in use.

`rrg model add/list/use/pull` call this module; everything that needs a model asks `open_model()`.
A pair is checked when it is added (both files GGUF, the mmproj a vision projector whose output width
matches the text model) and again when it is opened, so a moved or replaced file gives one clear error
naming it. `pull()` is the only code in rrg-local that uses the network, and only when a person asks.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from rrg_local.config import Settings
from rrg_local.vlm.gguf_meta import GGUFError, read_metadata

REGISTRY_NAME = "models.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegistryError(Exception):
    """A registry problem a person can fix; the message says how."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    gguf: Path
    mmproj: Path
    chat_format: str | None = None
    image_max_tokens: int | None = None
    lora: Path | None = None  # a GGUF LoRA applied to `gguf` at load time
    lora_scope: str = "all"  # "speaker": only when describing concepts (see LlamaConfig)


def _path(settings: Settings) -> Path:
    return settings.home / REGISTRY_NAME


def _load(settings: Settings) -> dict:
    try:
        return tomllib.loads(_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"cannot read {_path(settings)}: {exc}") from exc


def _save(settings: Settings, data: dict) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    tmp = _path(settings).with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
    os.replace(tmp, _path(settings))


def check_pair(gguf: Path, mmproj: Path) -> dict[str, object]:
    """Validate a text GGUF and its projector; returns a few facts about them. Raises RegistryError."""
    metas = {}
    for what, path in (("model", gguf), ("mmproj", mmproj)):
        if not path.is_file():
            raise RegistryError(f"{what} file not found: {path}")
        try:
            metas[what] = read_metadata(path)
        except GGUFError as exc:
            raise RegistryError(f"{what} file {path}: {exc}") from exc
        except OSError as exc:
            raise RegistryError(f"cannot read {what} file {path}: {exc.strerror or exc}") from exc
    text, proj = metas["model"], metas["mmproj"]
    arch = text.get("general.architecture")
    if arch == "clip" or text.get("general.type") == "mmproj":
        raise RegistryError(f"model file {gguf} is a projector (mmproj), not a language model")
    if proj.get("general.architecture") != "clip" or not proj.get("clip.has_vision_encoder", False):
        raise RegistryError(f"mmproj file {mmproj} is not a vision projector (no clip vision encoder)")
    width = text.get(f"{arch}.embedding_length")
    proj_dim = proj.get("clip.vision.projection_dim")
    if width and proj_dim and width != proj_dim:
        raise RegistryError(
            f"mmproj file {mmproj} does not match {gguf}: it projects to {proj_dim} dims, the model has {width}"
        )
    return {"architecture": arch, "embedding_length": width, "projector": proj.get("clip.projector_type")}


def check_lora(lora: Path) -> None:
    if not lora.is_file():
        raise RegistryError(f"LoRA file not found: {lora}")
    try:
        meta = read_metadata(lora)
    except (GGUFError, OSError) as exc:
        raise RegistryError(f"LoRA file {lora}: {exc}") from exc
    if meta.get("general.type") != "adapter":
        raise RegistryError(f"LoRA file {lora} is not a GGUF adapter (rrg-train export writes one)")


def add(
    settings: Settings,
    name: str,
    gguf: Path,
    mmproj: Path,
    *,
    chat_format: str | None = None,
    use: bool = False,
    lora: Path | None = None,
    image_max_tokens: int | None = None,
    lora_scope: str = "all",
) -> ModelEntry:
    if not _NAME.match(name):
        raise RegistryError(f"model name {name!r}: use letters, digits, '.', '_' or '-'")
    gguf, mmproj = gguf.expanduser().absolute(), mmproj.expanduser().absolute()
    check_pair(gguf, mmproj)
    if lora is not None:
        lora = lora.expanduser().absolute()
        check_lora(lora)
    data = _load(settings)
    models = data.setdefault("models", {})
    models[name] = (
        {"gguf": str(gguf), "mmproj": str(mmproj)}
        | ({"chat_format": chat_format} if chat_format else {})
        | ({"lora": str(lora)} if lora else {})
        | ({"image_max_tokens": int(image_max_tokens)} if image_max_tokens else {})
        | ({"lora_scope": lora_scope} if lora and lora_scope != "all" else {})
    )
    if use or "default" not in data:
        data["default"] = name
    _save(settings, data)
    return ModelEntry(name, gguf, mmproj, chat_format, image_max_tokens, lora=lora, lora_scope=lora_scope)


def entries(settings: Settings) -> tuple[list[ModelEntry], str | None]:
    data = _load(settings)
    out = [
        ModelEntry(
            name,
            Path(m["gguf"]),
            Path(m["mmproj"]),
            m.get("chat_format"),
            m.get("image_max_tokens"),
            Path(m["lora"]) if m.get("lora") else None,
            m.get("lora_scope", "all"),
        )
        for name, m in sorted(data.get("models", {}).items())
    ]
    return out, data.get("default")


def use(settings: Settings, name: str) -> None:
    data = _load(settings)
    if name not in data.get("models", {}):
        raise RegistryError(f"no model named {name!r} (rrg model list)")
    data["default"] = name
    _save(settings, data)


def get(settings: Settings, name: str | None = None) -> ModelEntry:
    models, default = entries(settings)
    name = name or default
    if not models or name is None:
        raise RegistryError(
            "no model configured: add one with `rrg model add NAME --gguf FILE --mmproj FILE` or `rrg model pull REPO`"
        )
    for m in models:
        if m.name == name:
            return m
    raise RegistryError(f"no model named {name!r} (rrg model list)")


def open_model(settings: Settings, name: str | None = None, **overrides):
    """The configured model, checked and ready to load lazily (a `LlamaVisionModel`)."""
    from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel

    entry = get(settings, name)
    check_pair(entry.gguf, entry.mmproj)
    if entry.lora is not None:
        check_lora(entry.lora)
    kw = {"image_max_tokens": entry.image_max_tokens} if entry.image_max_tokens else {}
    kw |= {"lora": entry.lora, "lora_scope": entry.lora_scope} if entry.lora else {}
    return LlamaVisionModel(
        LlamaConfig(
            model=entry.gguf, mmproj=entry.mmproj, name=entry.name, max_pixels=settings.max_pixels, **kw | overrides
        )
    )


def pick_files(files: list[str], quant: str = "Q4_K_M") -> tuple[str, str]:
    """Choose the text GGUF (preferring `quant`) and the projector among a repository's files (pure).

    >>> pick_files(["m-Q8_0.gguf", "m-Q4_K_M.gguf", "mmproj-m-f16.gguf", "README.md"])
    ('m-Q4_K_M.gguf', 'mmproj-m-f16.gguf')
    """
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    projs = [f for f in ggufs if "mmproj" in f.lower()]
    texts = [f for f in ggufs if f not in projs]
    if not texts or not projs:
        raise RegistryError("the repository has no GGUF model + mmproj pair")
    text = next((f for f in texts if quant.lower() in f.lower()), sorted(texts)[0])
    proj = next((f for f in projs if "f16" in f.lower()), next((f for f in projs if "q8" in f.lower()), projs[0]))
    return text, proj


def _check_reachable(endpoint: str, repo: str, timeout: float = 5.0) -> None:
    """Fail fast and quietly when offline, instead of the hub client's minute of retries."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise RegistryError(
            f"cannot pull {repo}: the Hugging Face hub ({url.hostname}) is not reachable from this machine "
            f"({exc.strerror or exc}); copy the GGUF files here and use `rrg model add` instead"
        ) from exc


def pull(settings: Settings, repo: str, *, name: str | None = None, quant: str = "Q4_K_M") -> ModelEntry:
    """Download a GGUF pair from the Hugging Face hub (needs internet and `huggingface_hub`) and add it."""
    try:
        from huggingface_hub import hf_hub_download, list_repo_files
    except ImportError as exc:
        raise RegistryError("model pull needs huggingface_hub: pip install huggingface_hub") from exc

    from huggingface_hub import constants

    _check_reachable(constants.ENDPOINT, repo)
    dest = settings.home / "models" / repo.replace("/", "--")
    try:
        text, proj = pick_files(list_repo_files(repo), quant)
        paths = [Path(hf_hub_download(repo, f, local_dir=dest)) for f in (text, proj)]
    except RegistryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the hub client raises many transport types; all mean "cannot pull"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RegistryError(f"cannot pull {repo} from the Hugging Face hub (offline?): {first}") from exc
    return add(settings, name or repo.split("/")[-1].lower(), paths[0], paths[1])
