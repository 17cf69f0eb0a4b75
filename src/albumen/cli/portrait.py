"""CLI: ``albumen portrait IN OUT [--aperture 1.4..16] [--focus X,Y] [--preset natural] [--overwrite] [--json]``.

Thin: build a ``PortraitConfig`` (preset < flags), run ``PortraitMode.process_file``, print what was done. Every
failure (bad file, OUT == IN, no subject) is one clear line on stderr and exit code 2. Registered by
``albumen.cli.main``; heavy imports (OpenCV, MediaPipe) happen inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from albumen.cli.context import fail

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("portrait")
    def portrait(
        src: Path = typer.Argument(..., metavar="IN", help="The photo (read only, never changed)."),
        dst: Path = typer.Argument(..., metavar="OUT", help="The new file (.jpg, .png, .webp, .tif)."),
        aperture: Optional[float] = typer.Option(
            None, "--aperture", "-a", help="f-number 1.4..16: smaller = more blur (default: the preset's, f/2.8)."
        ),
        focus: Optional[str] = typer.Option(
            None, "--focus", help="X,Y in fractions of width and height: the subject to keep sharp, e.g. 0.5,0.35."
        ),
        preset: str = typer.Option("natural", "--preset", help="natural, dramatic or subtle."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists (never IN)."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Blur the background like a fast lens, keeping the subject sharp; writes OUT with IN's EXIF."""
        from albumen.vision.portrait import (
            PORTRAIT_PRESETS,
            NoSubjectFound,
            PortraitFileError,
            PortraitMode,
            parse_focus,
        )
        from albumen.vision.segmentation import SegmentationUnavailable

        if preset not in PORTRAIT_PRESETS:
            fail(f"--preset {preset!r}: choose one of {', '.join(PORTRAIT_PRESETS)}")
        changes: dict[str, object] = {}
        try:
            if aperture is not None:
                changes["aperture"] = aperture
            if focus is not None:
                changes["focus"] = parse_focus(focus)
            config = PORTRAIT_PRESETS[preset].replace(**changes)
        except ValueError as exc:
            fail(str(exc))
        mode = PortraitMode(config)
        try:
            report = mode.process_file(src, dst, overwrite=overwrite)
        except (PortraitFileError, NoSubjectFound, SegmentationUnavailable) as exc:
            fail(f"{src}: {exc}" if isinstance(exc, NoSubjectFound) else str(exc))
        finally:
            mode.close()
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        from rich.console import Console

        w, h = report["size"]
        Console(highlight=False).print(
            f"wrote {dst} ({w}x{h}, f/{config.aperture:g}, subject: {report['subject']}, "
            f"{report['render_s']:.2f} s{', EXIF kept' if report['exif_kept'] else ''})"
        )
