"""The photo index: scan, EXIF, hashing, thumbnails, SQLite store, sample library. Knows nothing about ML models."""
