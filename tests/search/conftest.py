"""A tiny in-memory library for search tests: photos with days, GPS, places, named people and fake vectors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from albumen.library.store import Store
from albumen.search.engine import DEFAULT_SPACE
from albumen.vision.text_embedding import FakeTextEmbedder


@dataclass(frozen=True)
class FakePhoto:
    name: str
    description: str  # embedded with the fake embedder as the photo's vector ("" = no vector)
    taken_at: str | None = None
    gps: tuple[float, float] | None = None
    place: tuple[str, str, str, str] | None = None  # city, region, country, country code
    people: Sequence[str] = ()


PHOTOS = [
    FakePhoto("dog_beach.jpg", "dog running on a sandy beach by the sea", "2026-07-14T10:00:00", (38.70, -9.14),
              ("Lisbon", "Lisbon", "Portugal", "PT"), ("Anna Berg",)),
    FakePhoto("cat_sofa.jpg", "cat sleeping on a sofa indoors", "2026-02-02T20:00:00", (52.52, 13.40),
              ("Berlin", "Berlin", "Germany", "DE")),
    FakePhoto("xmas_tree.jpg", "christmas tree with presents and family", "2025-12-25T18:00:00", (52.52, 13.41),
              ("Berlin", "Berlin", "Germany", "DE"), ("Anna Berg", "Tom")),
    FakePhoto("snow_peak.jpg", "snow covered mountain peak under a blue sky", "2024-01-20T12:00:00", (46.02, 7.75),
              ("Zermatt", "Valais", "Switzerland", "CH"), ("Tom",)),
    FakePhoto("pasta.jpg", "plate of pasta food on a restaurant table", "2023-06-10T13:00:00", (41.90, 12.50),
              ("Rome", "Lazio", "Italy", "IT"), ("Anna Berg", "Tom")),
    FakePhoto("home_garden.jpg", "flowers in the garden", "2026-05-01T09:00:00", (52.51, 13.39),
              ("Berlin", "Berlin", "Germany", "DE")),
    FakePhoto("home_dog.jpg", "dog playing in the park", "2026-04-11T09:00:00", (52.53, 13.40),
              ("Berlin", "Berlin", "Germany", "DE")),
    FakePhoto("undated.jpg", "dog portrait", None, None, None),
    FakePhoto("no_vector.jpg", "", "2022-03-03T10:00:00"),
]


def build_store(photos: Sequence[FakePhoto] = PHOTOS, embedder: FakeTextEmbedder | None = None,
                store: Store | None = None) -> Store:
    """A store (in-memory by default) holding ``photos``; vectors are the fake embedding of each description."""
    embedder = embedder or FakeTextEmbedder()
    store = store or Store.memory()
    person_ids: dict[str, int] = {}
    vectors: dict[int, np.ndarray] = {}
    places: list[tuple[int, dict]] = []
    with store.write() as conn:
        for i, p in enumerate(photos, start=1):
            lat, lon = p.gps if p.gps else (None, None)
            conn.execute(
                "INSERT INTO photos (id, content_hash, size, format, width, height, taken_at, latitude, longitude,"
                " indexed_at) VALUES (?, ?, 1, 'JPEG', 10, 10, ?, ?, ?, '2026-11-28')",
                (i, f"sha256:{i:064x}", p.taken_at, lat, lon),
            )
            path = f"/photos/{p.name}"
            conn.execute(
                "INSERT INTO files (path_bytes, path, photo_id, size, mtime_ns, inode, seen_at)"
                " VALUES (?, ?, ?, 1, 0, ?, '2026-11-28')",
                (path.encode(), path, i, i),
            )
            for name in p.people:
                if name not in person_ids:
                    cur = conn.execute("INSERT INTO people (name, created_at, updated_at) VALUES (?, 'x', 'x')", (name,))
                    person_ids[name] = int(cur.lastrowid)
                conn.execute(
                    "INSERT INTO faces (photo_id, x, y, w, h, score, model_id, model_version, person_id)"
                    " VALUES (?, 0, 0, 0.1, 0.1, 1, 'fake', '1', ?)",
                    (i, person_ids[name]),
                )
            if p.description:
                vectors[i] = embedder.embed([p.description])[0]
            if p.place:
                city, region, country, cc = p.place
                places.append((i, {"geotagged": True, "latitude": lat, "longitude": lon, "city": city, "region": region,
                                   "subregion": "", "country": country, "country_code": cc, "city_distance_km": 1.0}))
        hidden = conn.execute("INSERT INTO people (name, hidden, created_at, updated_at) VALUES ('Ghost', 1, 'x', 'x')")
        conn.execute("INSERT INTO faces (photo_id, x, y, w, h, score, model_id, model_version, person_id)"
                     " VALUES (1, 0, 0, 0.1, 0.1, 1, 'fake', '1', ?)", (hidden.lastrowid,))
    store.put_embeddings(DEFAULT_SPACE, "fake", "1", vectors)
    store.put_analyses("places", "fake", "1", places)
    return store


@pytest.fixture
def store() -> Iterator[Store]:
    s = build_store()
    yield s
    s.close()
