"""Albumen: private, on-device photo intelligence.

Two independent pillars sit under the product:

- ``albumen.library``: the photo index (scan, EXIF, hashes, thumbnails, SQLite store). Knows nothing about models.
- ``albumen.llm``: the on-device LLM engine. Knows nothing about photos.

``albumen.vision``, ``albumen.search``, ``albumen.memories`` and ``albumen.cli`` build the product on top.
Importing this package has no side effects.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
