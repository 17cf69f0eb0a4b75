"""CLI commands: sample-library (registered by albumen.cli.main).

Thin: parses flags, calls ``albumen.library.sample.build_sample_library``, prints a summary (rich) or ``--json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from albumen.cli.context import fail

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("sample-library")
    def sample_library(
        directory: Path = typer.Argument(..., help="Folder to create or update (only files this command made are ever changed)."),
        photos: int = typer.Option(200, "--photos", "-n", min=1, help="How many photos (hostile files come on top)."),
        seed: int = typer.Option(0, "--seed", help="Same seed, same library, byte for byte."),
        workers: int = typer.Option(0, "--workers", min=0, help="Processes to render with (0 = one per core)."),
        hostile: bool = typer.Option(True, "--hostile/--no-hostile", help="Add the hostile/ folder of broken files."),
        as_json: bool = typer.Option(False, "--json", help="Print the build report as JSON."),
    ) -> None:
        """Build a phone-like sample library from real photos, with a ground truth (ground_truth.json)."""
        from albumen.library.sample import SampleConfig, SampleLibraryError, build_sample_library
        from albumen.library.sample.sources import SourceError

        config = SampleConfig(photos=photos, seed=seed, workers=workers, hostile=hostile)
        try:
            if as_json:
                report = build_sample_library(directory, config)
            else:
                report = _with_progress(directory, config, build_sample_library)
        except (SampleLibraryError, SourceError, ValueError) as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot write the sample library in {directory}: {exc}")
        if as_json:
            typer.echo(json.dumps(report.to_json(), indent=1))
        else:
            _print_summary(report)
        if report.errors:
            raise typer.Exit(1)


def _with_progress(directory: Path, config: object, build: object) -> object:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), transient=True,
    ) as bar:
        task = bar.add_task("rendering photos", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return build(directory, config, progress)  # type: ignore[operator]


def _print_summary(report: object) -> None:
    from rich.console import Console

    r = report.to_json()  # type: ignore[attr-defined]
    console = Console()
    console.print(
        f"[bold]{r['photos']}[/] photos in {r['root']} "
        f"({r['written']} written, {r['unchanged']} unchanged, {r['removed']} stale removed), "
        f"{r['hostile']} hostile files, from {r['sources']} real source photos, in {r['seconds']:.1f} s",
        highlight=False,
    )
    console.print(f"ground truth: {r['ground_truth']}" + ("" if r["ground_truth_written"] else " (unchanged)"), highlight=False)
    for line in r["errors"][:20]:
        console.print(f"[red]error:[/] {line}", highlight=False)
    if len(r["errors"]) > 20:
        console.print(f"[red]... and {len(r['errors']) - 20} more errors[/]")
