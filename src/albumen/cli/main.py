"""The ``albumen`` entry point: one typer app, each subsystem's commands registered from its own module.

Each ``register(app)`` adds commands; heavy imports (torch, models) happen inside the commands, never here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from albumen.cli import context, library, llm, llm_finetune, llm_quantize, portrait, sample, search, vision

__all__ = ["app", "main"]


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="albumen",
        help="Private, on-device photo intelligence. Nothing leaves this machine.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def _root(
        ctx: typer.Context,
        config: Optional[Path] = typer.Option(None, "--config", help="Config file (TOML)."),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the database, thumbnails and caches live."),
    ) -> None:
        ctx.obj = context.Context(config_path=config, data_dir=data_dir)

    sample.register(app)
    library.register(app)
    vision.register(app)
    search.register(app)
    portrait.register(app)
    llm_app = typer.Typer(help="The on-device LLM engine.", no_args_is_help=True)
    llm.register(llm_app)
    llm_quantize.register(llm_app)
    llm_finetune.register(llm_app)
    app.add_typer(llm_app, name="llm")
    return app


app = build_app()


def main() -> None:
    from albumen.privacy import install_network_guard
    from albumen.quiet import quiet_third_party

    install_network_guard()
    quiet_third_party()
    app()
