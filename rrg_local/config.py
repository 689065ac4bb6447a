"""Settings: where rrg-local keeps its data, which folders make up the library, and scan limits.

`load_settings()` is the one way to get a `Settings`; the CLI calls it once and passes the value down.
Data lives under a per-user directory (platformdirs), or under `$RRG_HOME` when that is set. The
user-editable part is `config.toml` in that directory; a config that cannot be read falls back to
the defaults and says why in `Settings.notices` (the CLI prints them, the TUI shows them).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import platformdirs
import tomli_w

APP_NAME = "rrg-local"
HOME_ENV = "RRG_HOME"
CONFIG_NAME = "config.toml"

# Pillow's own hard stop is 2 x its MAX_IMAGE_PIXELS (about 179 MP); above that it refuses to open.
PILLOW_BOMB_LIMIT = 178_956_970


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Frozen: change it with `dataclasses.replace` and `save_settings`."""

    home: Path
    folders: tuple[Path, ...] = ()
    # Decompression-bomb guard: refuse images with more pixels than this (before decoding).
    max_pixels: int = 150_000_000
    thumb_size: int = 320
    # Seconds a path must be quiet before the watcher indexes it (coalesces bursts of writes).
    debounce_s: float = 1.0
    # Full rescan while watching, to catch events the OS dropped (seconds; 0 disables).
    rescan_interval_s: float = 900.0
    # Worker threads for decoding; 0 means one per free core.
    scan_workers: int = 0
    # Stage-1 retrieval embedder: a folder made by `rrg-train export-embedder` (ONNX CLIP/SigLIP);
    # empty: the model's own vision tower.
    embedder: str = ""
    # Auto-tagging stage 1: a concept goes to stage 2 only for photos at least this similar to it, as a
    # quantile of its similarity to the whole library (most photos show none of a person's concepts);
    # 0 disables the cut (a library where one concept is in more than a few percent of the photos).
    tag_background_quantile: float = 0.95
    # ...raised, with many concepts, so that all of them together send at most this share of the library to
    # stage 2 (each concept: at most budget / concepts); 0 disables the budget.
    tag_stage2_budget: float = 0.3
    tag_top_k: int = 3  # concepts per photo handed to stage 2
    # Stage 2: "identify" (one listener call per photo among its candidates), "recognize" (one per candidate) or
    # "likelihood" (each candidate's description scored as a caption of the photo, against its own photos).
    tag_stage2: str = "identify"
    # A photo whose stage-1 similarity to one concept beats every other concept's by at least this much is
    # tagged with it whatever stage 2 says (stage 2 still scores and explains it); 0 (the default) never. The
    # scale is the embedder's: the demo sets 0.05 for its own embedder.
    tag_sure_margin: float = 0.0
    notices: tuple[str, ...] = field(default=(), compare=False)

    @property
    def db_path(self) -> Path:
        return self.home / "library.db"

    @property
    def thumbs_dir(self) -> Path:
        return self.home / "thumbs"

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_NAME

    def workers(self) -> int:
        if self.scan_workers > 0:
            return self.scan_workers
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


_EDITABLE = {f.name for f in fields(Settings)} - {"home", "notices"}
# Knobs that must lie in [0, 1) (the TUI's settings form checks the same).
FRACTIONS = {"tag_background_quantile", "tag_stage2_budget", "tag_sure_margin"}
_CHOICES = {"tag_stage2": ("identify", "recognize", "likelihood")}


def default_home(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    override = environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser().absolute()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def _coerce(raw: dict, home: Path) -> tuple[Settings, list[str]]:
    """Build Settings from a parsed config table, keeping defaults for keys that are wrong."""
    notices: list[str] = []
    settings = Settings(home=home)
    for key, value in raw.items():
        if key not in _EDITABLE:
            notices.append(f"config: unknown key {key!r} ignored")
            continue
        default = getattr(settings, key)
        try:
            if key == "folders":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise TypeError("expected a list of paths")
                value = tuple(Path(v).expanduser().absolute() for v in value)
            elif isinstance(default, str):
                if not isinstance(value, str):
                    raise TypeError(f"expected text, got {type(value).__name__}")
                if key in _CHOICES and value not in _CHOICES[key]:
                    raise ValueError(f"must be one of {', '.join(_CHOICES[key])}")
            elif isinstance(default, bool) or not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"expected a number, got {type(value).__name__}")
            else:
                value = type(default)(value)
                if value < 0:
                    raise ValueError("must not be negative")
                if key in FRACTIONS and value >= 1:
                    raise ValueError("must be below 1")
        except (TypeError, ValueError) as exc:
            notices.append(f"config: {key}: {exc}; using the default")
            continue
        settings = replace(settings, **{key: value})
    return settings, notices


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read `config.toml` under the data home; never raises for a bad file (defaults + a notice)."""
    home = default_home(environ)
    path = home / CONFIG_NAME
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings(home=home)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return Settings(home=home, notices=(f"config: cannot read {path} ({exc}); using defaults",))
    settings, notices = _coerce(raw, home)
    return replace(settings, notices=tuple(notices))


def save_settings(settings: Settings) -> Path:
    """Write the editable fields to `config.toml` atomically (temp file, then rename)."""
    data: dict = {}
    defaults = Settings(home=settings.home)
    for name in sorted(_EDITABLE):
        value = getattr(settings, name)
        if value == getattr(defaults, name) and name != "folders":
            continue
        data[name] = [str(p) for p in value] if name == "folders" else value
    settings.home.mkdir(parents=True, exist_ok=True)
    tmp = settings.config_path.with_suffix(".toml.tmp")
    tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
    os.replace(tmp, settings.config_path)
    return settings.config_path
