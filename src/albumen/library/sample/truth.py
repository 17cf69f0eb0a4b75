"""The ground truth of a sample library: what every file shows, where and when it was taken, who is in it, and which
trips, events, bursts and hostile files the library holds. The schema is documented in docs/sample-library.md.

Also the record of which files the generator created (path, size, sha256, spec), which is what makes re-runs cheap and
lets the builder remove only its own stale files. This module turns plans into JSON and back; it renders nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from albumen.library.sample.hostile import HostileFile
from albumen.library.sample.places import HOME, TRIP_CITIES, city_by_id
from albumen.library.sample.plan import LibraryPlan, PhotoPlan
from albumen.library.sample.render import Rendered
from albumen.library.sample.sources import SourceImage
from albumen.library.sample.transforms import map_box, output_size

__all__ = ["SCHEMA", "GROUND_TRUTH", "GENERATOR_VERSION", "photo_spec", "ground_truth", "load_ground_truth",
           "write_json_if_changed", "file_sha256", "same_file"]

SCHEMA = "albumen-sample-library/1"
GROUND_TRUTH = "ground_truth.json"
GENERATOR_VERSION = 1  # bump when rendering changes, so re-runs re-render instead of trusting old files


def _iso(plan: PhotoPlan) -> str:
    return plan.local_time.isoformat(timespec="milliseconds") + plan.offset


def photo_spec(plan: PhotoPlan, source_sha256: str) -> str:
    """A digest of everything that decides a file's bytes: equal specs render equal files."""
    fields = {
        "v": GENERATOR_VERSION,
        "source": source_sha256,
        "kind": plan.kind,
        "format": plan.format,
        "transform": plan.transform.to_json(),
        "time": _iso(plan),
        "gps": plan.gps,
        "camera": [plan.make, plan.model],
        "screen": plan.screen_size,
        "path": plan.path,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def _photo_entry(plan: PhotoPlan, source: SourceImage, rendered: Rendered, spec: str) -> dict[str, Any]:
    city = city_by_id(plan.city_id)
    if plan.kind == "screenshot":
        faces: list[dict[str, Any]] = []
        display = list(plan.screen_size or (rendered.width, rendered.height))
        labels = ["screenshot", *source.labels]
    else:
        faces = []
        for face in source.faces:
            box = map_box(face.box, plan.transform)
            if box is not None:
                faces.append({"person": face.person, "box": list(box), "hog_detectable": face.hog})
        display = list(output_size(plan.transform))
        labels = list(source.labels)
        if plan.transform.grayscale and "black and white" not in labels:
            labels.append("black and white")
    utc = plan.utc_time
    return {
        "path": plan.path,
        "kind": plan.kind,
        "format": plan.format,
        "taken_at": _iso(plan),
        "taken_at_utc": utc.isoformat(timespec="milliseconds") + "Z",
        "gps": None if plan.gps is None else {"lat": plan.gps[0], "lon": plan.gps[1], "altitude": plan.gps[2]},
        "city": city.name,
        "country": city.country,
        "country_code": city.country_code,
        "trip_id": plan.trip_id,
        "event_id": plan.event_id,
        "burst_id": plan.burst_id,
        "edit_of": plan.edit_of,
        "people": sorted({f["person"] for f in faces}),
        "faces": faces,
        "labels": labels,
        "source": source.id,
        "transform": plan.transform.to_json(),
        "orientation": plan.transform.orientation,
        "camera": None if plan.make is None else {"make": plan.make, "model": plan.model},
        "display_size": display,
        "stored_size": [rendered.width, rendered.height],
        "bytes": rendered.bytes,
        "sha256": rendered.sha256,
        "spec": spec,
    }


def ground_truth(
    plan: LibraryPlan,
    rendered: dict[str, Rendered],
    specs: dict[str, str],
    source_digests: dict[str, str],
    hostile: list[HostileFile],
    n_photos: int,
) -> dict[str, Any]:
    """The whole ground-truth document. Files that failed to render are left out (the build report lists them)."""
    by_id = {s.id: s for s in plan.sources}
    photos = [
        _photo_entry(p, by_id[p.source_id], rendered[p.path], specs[p.path])
        for p in plan.photos
        if p.path in rendered and rendered[p.path].error is None
    ]
    people: dict[str, dict[str, Any]] = {}
    for s in plan.sources:
        for face in s.faces:
            people[face.person] = {"source": s.id, "hog_detectable": face.hog, "photos": []}
    bursts: dict[str, list[str]] = {}
    trips = {t.id: {**city_by_id(t.city_id).to_json(), "id": t.id, "start": t.start.isoformat(),
                    "end": t.end.isoformat(), "photos": []} for t in plan.trips}
    events = {e.id: {"id": e.id, "kind": e.kind, "title": e.title, "date": e.day.isoformat(),
                     "city": city_by_id(e.city_id).name,
                     "country": city_by_id(e.city_id).country, "person": e.hero, "people": list(e.people), "photos": []} for e in plan.events}
    for entry in photos:
        for name in entry["people"]:
            people[name]["photos"].append(entry["path"])
        if entry["burst_id"]:
            bursts.setdefault(entry["burst_id"], []).append(entry["path"])
        if entry["trip_id"]:
            trips[entry["trip_id"]]["photos"].append(entry["path"])
        if entry["event_id"]:
            events[entry["event_id"]]["photos"].append(entry["path"])
    counts: dict[str, dict[str, int]] = {"kind": {}, "format": {}}
    for entry in photos:
        for key in counts:
            counts[key][entry[key]] = counts[key].get(entry[key], 0) + 1
    return {
        "schema": SCHEMA,
        "generator": {"version": GENERATOR_VERSION, "seed": plan.seed, "photos": n_photos},
        "home": HOME.to_json(),
        "cities": [c.to_json() for c in (HOME, *TRIP_CITIES)],
        "counts": {"photos": len(photos), **counts, "hostile": len(hostile)},
        "sources": {s.id: {**s.to_json(), "sha256": source_digests[s.id]} for s in plan.sources},
        "people": people,
        "trips": list(trips.values()),
        "events": list(events.values()),
        "bursts": [{"id": k, "photos": v} for k, v in bursts.items()],
        "photos": photos,
        "hostile": [h.to_json() for h in hostile],
    }


def load_ground_truth(root: Path) -> dict[str, Any] | None:
    """The ground truth a previous run left in ``root``, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads((root / GROUND_TRUTH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def write_json_if_changed(path: Path, data: dict[str, Any]) -> bool:
    """Write ``data`` as JSON (ASCII, sorted nowhere: order is meaningful) unless the file already says exactly this."""
    from albumen.library.sample.render import write_if_changed

    text = json.dumps(data, indent=1, ensure_ascii=True) + "\n"
    return write_if_changed(path, text.encode("ascii"))


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def same_file(path: Path, entry: dict[str, Any]) -> bool:
    """Whether the regular file at ``path`` still holds the bytes ``entry`` recorded."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    import stat

    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.get("bytes"):
        return False
    return file_sha256(path) == entry.get("sha256")
