"""What every command receives: the resolved config (defaults < file < flags) and an error printer."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import typer

from albumen.config import AppConfig, ConfigError, load_config

__all__ = ["Context", "fail", "open_library", "print_json"]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a clear error on stderr and exit with ``code``."""
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@dataclass
class Context:
    config_path: Path | None = None
    data_dir: Path | None = None
    _cache: dict[str, AppConfig] = field(default_factory=dict)

    def config(self, **overrides: Any) -> AppConfig:
        """The config with these flag overrides (dotted keys; None means "flag not given")."""
        merged = {"data_dir": self.data_dir, **overrides}
        try:
            return load_config(self.config_path, merged)
        except ConfigError as exc:
            fail(str(exc))


def open_library(ctx: typer.Context) -> Any:
    """The store of an existing library, or a clear error when there is none yet (never creates one)."""
    from albumen.library.store import Store, StoreError

    cfg = ctx.obj.config()
    if not cfg.db_path.exists():
        fail(f"no library in {cfg.data_dir} yet; run `albumen index PATH` first")
    try:
        return Store.open(cfg.db_path)
    except StoreError as exc:
        fail(str(exc))


def print_json(data: Any) -> None:
    """Machine-readable output for ``--json``: UTF-8, indented, dates and paths as strings."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
