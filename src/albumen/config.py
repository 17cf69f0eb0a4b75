"""Typed configuration: defaults < config file (TOML) < CLI flags.

The config file lives at ``--config`` or, by default, ``<user config dir>/albumen/config.toml``. Every section is a
dataclass; unknown keys in the file are an error so that typos never pass silently. This module knows nothing about
what the settings do; each subsystem reads its own section.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "AppConfig",
    "ConfigError",
    "IndexConfig",
    "LLMConfig",
    "VisionConfig",
    "default_config_path",
    "default_data_dir",
    "load_config",
]

APP_NAME = "albumen"


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message says which and why."""


def default_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(os.environ.get("ALBUMEN_CONFIG") or Path(user_config_dir(APP_NAME)) / "config.toml")


def default_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(os.environ.get("ALBUMEN_DATA_DIR") or user_data_dir(APP_NAME))


@dataclass
class IndexConfig:
    """How the indexer walks, decodes and stores."""

    workers: int = 0  # 0 = one per core
    thumbnail_sizes: tuple[int, ...] = (256, 1024)
    thumbnail_quality: int = 85
    follow_symlinks: bool = True
    max_image_pixels: int = 200_000_000  # above this a file is refused as a decompression bomb
    analyze: bool = True  # run the analyzers after indexing


@dataclass
class VisionConfig:
    """Which on-device analyzers run and how."""

    analyzers: tuple[str, ...] = ("tags", "embeddings", "faces", "quality", "places")
    batch_size: int = 16
    workers: int = 0
    face_model: str = "hog+mediapipe"  # "hog", "cnn" (slow), "mediapipe" or "hog+mediapipe" (docs/vision.md)


@dataclass
class LLMConfig:
    """Defaults for the on-device LLM engine."""

    model: str = "smollm2-135m"
    dtype: str = "float32"
    max_tokens: int = 128
    temperature: float = 0.0
    seed: int = 0
    models_dir: str = ""  # empty = <data dir>/models


@dataclass
class AppConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    index: IndexConfig = field(default_factory=IndexConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "library.sqlite3"

    @property
    def thumbnails_dir(self) -> Path:
        return self.data_dir / "thumbnails"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def models_dir(self) -> Path:
        return Path(self.llm.models_dir) if self.llm.models_dir else self.data_dir / "models"


T = TypeVar("T")


def _coerce(value: Any, target: Any, where: str) -> Any:
    origin = getattr(target, "__origin__", None)
    if target is Path or target == "Path":
        return Path(value).expanduser()
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
    if target in (int, "int") and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if target in (float, "float"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if target in (bool, "bool") and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if target in (str, "str") and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _merge(obj: T, values: dict[str, Any], where: str) -> T:
    import typing

    hints = typing.get_type_hints(type(obj))
    known = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    updates: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key}: expected a table")
            updates[key] = _merge(current, value, f"{where}.{key}")
        else:
            updates[key] = _coerce(value, hints[key], f"{where}.{key}")
    return dataclasses.replace(obj, **updates)  # type: ignore[type-var]


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> AppConfig:
    """Build the config: defaults, then the TOML file (if present), then ``overrides`` (CLI flags; None = unset).

    ``overrides`` uses dotted keys for sections, e.g. ``{"data_dir": "/x", "index.workers": 2}``.
    """
    cfg = AppConfig()
    explicit = path is not None
    path = path or default_config_path()
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        cfg = _merge(cfg, data, str(path))
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    nested: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return _merge(cfg, nested, "flags")
