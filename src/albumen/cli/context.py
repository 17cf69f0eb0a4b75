"""What every command receives: the resolved config (defaults < file < flags) and an error printer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import typer

from albumen.config import AppConfig, ConfigError, load_config

__all__ = ["Context", "fail"]


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
