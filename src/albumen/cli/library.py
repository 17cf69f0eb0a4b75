"""CLI commands of the photo index: ``albumen index``, ``stats``, ``ls``, ``errors`` (registered by albumen.cli.main).

Thin: parse flags, resolve the config, call ``albumen.library``, print with rich or as JSON. The one place that
runs the analyzers after indexing is ``_run_analyzers``; it imports ``albumen.vision.pipeline`` lazily and skips with
a one-line note when that module is not there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from albumen.cli.context import Context, fail, open_library, print_json

__all__ = ["register"]


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _IndexBar:
    """A rich progress bar fed by ``IndexProgress`` events: done/total, photos/s, new, errors and ETA.

    The rate is files finished per second since the index phase began (the scan is not counted); the ETA is what is
    left at that rate. ``console`` and ``clock`` are seams for tests.
    """

    def __init__(self, enabled: bool, console: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.enabled = enabled
        self.clock = clock
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7} photos/s"),
            TextColumn("new {task.fields[new]}  errors {task.fields[errors]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console or _console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self.task = self.progress.add_task("scanning", total=None, rate="-", new=0, errors=0, eta=_eta(None))
        self.started: float | None = None

    def __enter__(self) -> _IndexBar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, event: Any) -> None:
        if event.phase == "scan":
            self.progress.update(self.task, description=f"scanning ({event.done} files)", errors=event.errors)
            return
        if event.phase != "index":
            self.progress.update(self.task, description="finishing")
            return
        now = self.clock()
        if self.started is None or event.done == 0:
            self.started = now
        elapsed = now - self.started
        rate = event.done / elapsed if event.done and elapsed > 0 else None
        eta = (event.total - event.done) / rate if rate else None
        self.progress.update(
            self.task, description="indexing", total=event.total, completed=event.done,
            rate=f"{rate:.1f}" if rate else "-", new=event.new_photos, errors=event.errors, eta=_eta(eta),
        )


def _run_analyzers(store: Any, cfg: Any, quiet: bool) -> dict[str, Any]:
    """Run the vision analyzers on the indexed photos, if the vision pipeline is installed. Never raises."""
    try:
        from albumen.vision.pipeline import analyze_library
    except ImportError as exc:
        note = f"analyzers skipped: albumen.vision.pipeline is not available ({exc})"
        if not quiet:
            _console(stderr=True).print(f"[dim]{note}[/]")
        return {"ran": False, "note": note}
    console = _console(stderr=True)

    def progress(stage: str, done: int, total: int) -> None:
        if not quiet and (done == total or done % 50 == 0):
            console.print(f"[dim]{stage}: {done}/{total}[/]")

    try:
        result = analyze_library(store, cfg, progress)
    except Exception as exc:  # noqa: BLE001 - the index itself is already safe; report and go on
        note = f"analyzers failed: {type(exc).__name__}: {exc}"
        console.print(f"[yellow]{note}[/]")
        return {"ran": False, "note": note}
    return {"ran": True, "result": result}


def _summary_table(summary: Any) -> Any:
    from rich.table import Table

    table = Table(title="index summary", show_header=False)
    d = summary.as_dict()
    rows = [
        ("files found", d["scanned"]), ("unchanged (skipped)", d["unchanged"]), ("new photos", d["new_photos"]),
        ("moved / renamed / copies", d["linked"]), ("removed files", d["removed_files"]),
        ("removed photos", d["removed_photos"]), ("problems", d["errors"]), ("photos in library", d["photos"]),
        ("near-duplicate groups", d["near_duplicate_groups"]), ("seconds", f"{d['seconds']:.2f}"),
        ("photos/s", d["photos_per_second"] if d["photos_per_second"] is not None else "-"),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    return table


def index_command(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Folders (or files) to index."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout; no progress bar."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Worker processes (0 = one per core)."),
    no_analyze: bool = typer.Option(False, "--no-analyze", help="Only index; do not run the analyzers."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Re-read files recorded as bad."),
) -> None:
    """Index photo folders: EXIF, hashes, thumbnails. Incremental and safe to interrupt."""
    from albumen.library.indexer import IndexBusy, IndexSettings, index_paths
    from albumen.library.store import Store, StoreError

    obj: Context = ctx.obj
    cfg = obj.config(**{"index.workers": workers})
    ic = cfg.index
    settings = IndexSettings(
        workers=ic.workers, thumbnail_sizes=tuple(ic.thumbnail_sizes), thumbnail_quality=ic.thumbnail_quality,
        follow_symlinks=ic.follow_symlinks, max_image_pixels=ic.max_image_pixels, retry_errors=retry_errors,
    )
    try:
        store = Store.open(cfg.db_path)
    except StoreError as exc:
        fail(str(exc))
    with store:
        bar = _IndexBar(enabled=not as_json)
        try:
            with bar:
                summary = index_paths(store, paths, settings, bar)
        except IndexBusy as exc:
            fail(str(exc), code=3)
        analysis: dict[str, Any] = {"ran": False, "note": "--no-analyze"}
        if ic.analyze and not no_analyze:
            analysis = _run_analyzers(store, cfg, quiet=as_json)
    if as_json:
        print_json({**summary.as_dict(), "data_dir": str(cfg.data_dir), "analyzers": analysis})
        return
    console = _console()
    console.print(_summary_table(summary))
    for root in summary.missing_roots:
        console.print(f"[yellow]not found:[/] {root} (what was indexed there is kept)")
    if summary.errors:
        console.print(f"{summary.errors} file(s) could not be indexed; see `albumen errors`.")


def stats_command(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """What the library holds: photos, duplicates, dates, places, cameras, errors, analyzer outputs."""
    from albumen.library.catalog import library_stats

    with open_library(ctx) as store:
        stats = library_stats(store.conn, str(store.data_dir))
    if as_json:
        print_json(stats)
        return
    from rich.table import Table

    table = Table(title=f"library in {ctx.obj.config().data_dir}", show_header=False)
    last = stats.pop("last_index", None)
    for key, value in stats.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) if value else "-"
        table.add_row(key.replace("_", " "), str(value if value is not None else "-"))
    if last:
        done = last["summary"] or {}
        state = f"finished {last['finished_at']}" if last["finished_at"] else f"interrupted (started {last['started_at']})"
        table.add_row("last index", f"{state}; {done.get('new_photos', 0)} new, {done.get('errors', 0)} problems")
    _console().print(table)


def ls_command(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many photos."),
    offset: int = typer.Option(0, "--offset", min=0),
    order: str = typer.Option("taken", "--order", help="taken, path or id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List indexed photos (one line per distinct photo)."""
    from albumen.library.catalog import list_photos

    with open_library(ctx) as store:
        try:
            rows = list_photos(store.conn, limit=limit, offset=offset, order=order)
        except ValueError as exc:
            fail(str(exc))
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("id", "taken", "size", "camera", "gps", "copies")
    table.add_column("path", overflow="fold")
    for r in rows:
        gps = f"{r['latitude']:.3f},{r['longitude']:.3f}" if r["latitude"] is not None else ""
        camera = " ".join(x for x in (r["make"], r["model"]) if x)
        table.add_row(str(r["id"]), r["taken_at"] or "", f"{r['width']}x{r['height']}", camera, gps,
                      str(r["copies"]), r["path"])
    _console().print(table)


def errors_command(
    ctx: typer.Context,
    kind: Optional[str] = typer.Option(None, "--kind", help="Only this kind (e.g. truncated, not-an-image)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Files that could not be indexed, each with the reason."""
    from albumen.library.catalog import list_errors

    with open_library(ctx) as store:
        rows = list_errors(store.conn, kind=kind)
    if as_json:
        print_json(rows)
        return
    if not rows:
        _console().print("no errors recorded")
        return
    from rich.table import Table

    table = Table("kind")
    table.add_column("reason", overflow="fold")
    table.add_column("path", overflow="fold")
    for r in rows:
        table.add_row(r["kind"], r["reason"], r["path"])
    _console().print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("index")(index_command)
    app.command("stats")(stats_command)
    app.command("ls")(ls_command)
    app.command("errors")(errors_command)
