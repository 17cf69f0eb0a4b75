"""CLI: ``albumen analyze [--only NAME] [--force] [--json]`` and ``albumen people list|faces|name|merge|split|hide|
unhide|recluster``. Registered by ``albumen.cli.main``.

Thin: resolve the config, open the library's store, call ``albumen.vision.pipeline`` or ``albumen.people``, print a
rich table (or JSON with ``--json``). Models and sklearn are imported inside the commands only.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from albumen.cli.context import fail, open_library, print_json

__all__ = ["register"]


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def analyze_command(
    ctx: typer.Context,
    only: Optional[list[str]] = typer.Option(None, "--only", help="Run only this analyzer (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Re-run even where the stored result is current."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Worker processes (0 = one per core)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary; no progress bar."),
) -> None:
    """Run the on-device analyzers (tags, embeddings, faces, quality, places) on photos that need them."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from albumen.vision.pipeline import PipelineSettings, analyze_library

    cfg = ctx.obj.config(**{"vision.workers": workers})
    try:
        settings = PipelineSettings.from_config(cfg, only=only, force=force)
    except ValueError as exc:
        fail(str(exc))
    with open_library(ctx) as store:
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), disable=as_json, transient=False)
        task = bar.add_task("analyzing", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        with bar:
            summary = analyze_library(store, cfg, progress, settings=settings)
    if as_json:
        print_json(summary)
        return
    from rich.table import Table

    table = Table("analyzer", "photos", "errors", "seconds", title=f"analyzed {summary['photos']} photo(s) "
                  f"in {summary['seconds']:.1f} s on {summary['workers']} worker(s)")
    for name, n in summary["analyzed"].items():
        table.add_row(name, str(n), str(summary["errors"][name]), f"{summary['analyzer_seconds'][name]:.1f}")
    console = _console()
    console.print(table)
    for name, reason in summary["failed"].items():
        console.print(f"[yellow]{name} could not run:[/] {reason}")
    if "people" in summary:
        p = summary["people"]
        console.print(f"{p['assigned']} new face(s) grouped; {p['new_people']} new people")


# -- people (registered under `albumen people` by register) ------------------------------------------------------
def _edit(fn: Any, *args: Any) -> Any:
    from albumen.people.edits import PeopleError

    try:
        return fn(*args)
    except PeopleError as exc:
        fail(str(exc))


def people_list(
    ctx: typer.Context,
    hidden: bool = typer.Option(False, "--hidden", help="Include hidden people."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """People found in the library, most photos first."""
    from albumen.people.edits import list_people

    with open_library(ctx) as store:
        people = list_people(store, include_hidden=hidden)
    if as_json:
        print_json([p.as_dict() for p in people])
        return
    if not people:
        _console().print("no people yet: run `albumen analyze` (faces) first")
        return
    from rich.table import Table

    table = Table("id", "name", "photos", "faces", "hidden")
    table.add_column("example", overflow="fold")
    for p in people:
        table.add_row(str(p.person_id), p.name or "[dim]unnamed[/]", str(p.photos), str(p.faces),
                      "yes" if p.hidden else "", p.example_path or "")
    _console().print(table)


def people_faces(
    ctx: typer.Context,
    person: str = typer.Argument(..., help="Person id or name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The faces of one person (face ids for `people split`)."""
    from albumen.people.edits import person_faces

    with open_library(ctx) as store:
        rows = _edit(person_faces, store, person)
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("face", "photo", "box", "score", "pinned")
    table.add_column("path", overflow="fold")
    for r in rows:
        table.add_row(str(r["face_id"]), str(r["photo_id"]), ",".join(f"{v:.2f}" for v in r["box"]),
                      f"{r['score']:.2f}", "yes" if r["pinned"] else "", r["path"] or "")
    _console().print(table)


def people_name(
    ctx: typer.Context,
    person: str = typer.Argument(..., help="Person id or current name."),
    name: str = typer.Argument(..., help="The new name ('' clears it)."),
) -> None:
    """Name a person."""
    from albumen.people.edits import name_person

    with open_library(ctx) as store:
        pid = _edit(name_person, store, person, name)
    _console().print(f"person {pid} is now {name!r}" if name.strip() else f"person {pid} has no name now")


def people_merge(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="The person to keep (id or name)."),
    others: list[str] = typer.Argument(..., help="People to merge into it (ids or names)."),
) -> None:
    """Merge people who are the same person; the merge survives re-clustering."""
    from albumen.people.edits import merge_people

    with open_library(ctx) as store:
        pid = _edit(merge_people, store, target, others)
    _console().print(f"merged {len(others)} into person {pid}")


def people_split(
    ctx: typer.Context,
    person: str = typer.Argument(..., help="Person id or name."),
    faces: list[int] = typer.Argument(..., help="Face ids to move to a new person (see `people faces`)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the new person."),
) -> None:
    """Move some faces of a person to a new person; the split survives re-clustering."""
    from albumen.people.edits import split_person

    with open_library(ctx) as store:
        new = _edit(split_person, store, person, faces, name)
    _console().print(f"{len(faces)} face(s) moved to new person {new}")


def people_hide(ctx: typer.Context, person: str = typer.Argument(..., help="Person id or name.")) -> None:
    """Hide a person from lists and search."""
    from albumen.people.edits import hide_person

    with open_library(ctx) as store:
        pid = _edit(hide_person, store, person, True)
    _console().print(f"person {pid} hidden (`albumen people unhide {pid}` shows them again)")


def people_unhide(ctx: typer.Context, person: str = typer.Argument(..., help="Person id or name.")) -> None:
    """Show a hidden person again."""
    from albumen.people.edits import hide_person

    with open_library(ctx) as store:
        pid = _edit(hide_person, store, person, False)
    _console().print(f"person {pid} visible again")


def people_recluster(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Re-cluster every face from scratch, keeping names, hidden people, merges and splits."""
    from albumen.people.grouping import recluster

    with open_library(ctx) as store:
        out = recluster(store)
    if as_json:
        print_json(out)
        return
    _console().print(f"{out['faces']} faces in {out['clusters']} clusters: {out['faces_moved']} moved, "
                     f"{out['new_people']} new people, {out['removed_people']} empty people removed")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("analyze")(analyze_command)
    people_app = typer.Typer(help="Faces grouped into people: list, name, merge, split, hide, re-cluster.",
                             no_args_is_help=True)
    people_app.command("list")(people_list)
    people_app.command("faces")(people_faces)
    people_app.command("name")(people_name)
    people_app.command("merge")(people_merge)
    people_app.command("split")(people_split)
    people_app.command("hide")(people_hide)
    people_app.command("unhide")(people_unhide)
    people_app.command("recluster")(people_recluster)
    app.add_typer(people_app, name="people")
