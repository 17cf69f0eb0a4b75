"""The library's own migrations (namespace ``"library"``): files, photos, thumbnails, errors, and the generic
analyzer tables (analyses, embeddings, faces, people) that later subsystems fill.

Identity rules:
- ``files`` is one row per path on disk (the path's raw bytes are the key, so non-UTF-8 names survive);
- ``photos`` is one row per distinct content (sha256), so exact duplicates under two names share one photo;
- analyzer tables hang off ``photos`` and are dropped with it (ON DELETE CASCADE) when its last file goes away.

The library knows nothing about models: analyzer names, model ids and versions are plain strings here.
"""

from __future__ import annotations

from albumen.library.migrations import Migration

__all__ = ["LIBRARY_MIGRATIONS", "LIBRARY_NAMESPACE"]

LIBRARY_NAMESPACE = "library"

_CORE = """
CREATE TABLE photos (
    id              INTEGER PRIMARY KEY,
    content_hash    TEXT NOT NULL UNIQUE,          -- 'sha256:<hex>' of the file bytes
    size            INTEGER NOT NULL,              -- bytes
    format          TEXT NOT NULL,                 -- JPEG, PNG, WEBP, HEIF ...
    width           INTEGER NOT NULL,              -- as displayed, after EXIF orientation
    height          INTEGER NOT NULL,
    orientation     INTEGER NOT NULL DEFAULT 1,    -- EXIF orientation 1..8 of the original
    taken_at        TEXT,                          -- ISO 8601 local capture time, with offset when known
    tz_offset_min   INTEGER,                       -- minutes east of UTC, NULL when the file does not say
    taken_at_utc    TEXT,                          -- ISO 8601 UTC, only when the offset is known
    latitude        REAL,
    longitude       REAL,
    altitude        REAL,
    make            TEXT,
    model           TEXT,
    phash           TEXT,                          -- 64-bit perceptual hash, 16 hex digits
    near_group      INTEGER,                       -- id of the first photo of its near-duplicate group
    indexed_at      TEXT NOT NULL
);
CREATE INDEX photos_taken_at ON photos(taken_at_utc, taken_at);
CREATE INDEX photos_near_group ON photos(near_group);

CREATE TABLE files (
    id          INTEGER PRIMARY KEY,
    path_bytes  BLOB NOT NULL UNIQUE,              -- os.fsencode(absolute path)
    path        TEXT NOT NULL,                     -- printable form (undecodable bytes shown as \\xNN)
    photo_id    INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    inode       INTEGER NOT NULL,
    seen_at     TEXT NOT NULL
);
CREATE INDEX files_photo ON files(photo_id);

CREATE TABLE thumbnails (
    photo_id    INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    size        INTEGER NOT NULL,                  -- longest side requested
    path        TEXT NOT NULL,                     -- relative to the data dir
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    PRIMARY KEY (photo_id, size)
);

CREATE TABLE errors (
    id          INTEGER PRIMARY KEY,
    path_bytes  BLOB NOT NULL UNIQUE,
    path        TEXT NOT NULL,
    kind        TEXT NOT NULL,                     -- short machine-readable class, e.g. 'truncated', 'not-an-image'
    reason      TEXT NOT NULL,                     -- one clear sentence for people
    size        INTEGER,
    mtime_ns    INTEGER,
    recorded_at TEXT NOT NULL
);

CREATE TABLE index_runs (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    roots       TEXT NOT NULL,                     -- JSON list of printable root paths
    summary     TEXT                               -- JSON counts, NULL if the run did not finish
)
"""

_ANALYZERS = """
CREATE TABLE analyses (
    photo_id      INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    analyzer      TEXT NOT NULL,
    model_id      TEXT NOT NULL,
    model_version TEXT NOT NULL,
    payload       TEXT NOT NULL,                   -- JSON
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (photo_id, analyzer)
);

CREATE TABLE embeddings (
    photo_id      INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    space         TEXT NOT NULL,
    model_id      TEXT NOT NULL,
    model_version TEXT NOT NULL,
    dim           INTEGER NOT NULL,
    vector        BLOB NOT NULL,                   -- float32 little-endian, dim * 4 bytes
    PRIMARY KEY (photo_id, space)
);

CREATE TABLE people (
    id          INTEGER PRIMARY KEY,
    name        TEXT,
    hidden      INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE faces (
    id            INTEGER PRIMARY KEY,
    photo_id      INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    x             REAL NOT NULL,                   -- box in [0, 1] of the displayed (oriented) photo
    y             REAL NOT NULL,
    w             REAL NOT NULL,
    h             REAL NOT NULL,
    score         REAL NOT NULL,
    model_id      TEXT NOT NULL,
    model_version TEXT NOT NULL,
    embedding     BLOB,                            -- float32 little-endian
    person_id     INTEGER REFERENCES people(id) ON DELETE SET NULL
);
CREATE INDEX faces_photo ON faces(photo_id);
CREATE INDEX faces_person ON faces(person_id)
"""

LIBRARY_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "core: photos, files, thumbnails, errors, index runs", _CORE),
    Migration(2, "analyzer tables: analyses, embeddings, people, faces", _ANALYZERS),
)
