"""Optional extra source photos from Debian packages: ``mate-backgrounds`` has a dozen real nature photographs.

``fetch_extras`` runs ``apt-get download`` and ``dpkg -x`` to unpack the package into a cache folder without
installing it (it needs the Debian mirror, so it is a set-up step, never run by ``sample-library`` itself). The
sample library builds without them; with them it has more nature scenes. Run it as

    python -m albumen.library.sample.extras [CACHE_DIR]

This module knows how to fetch and unpack; ``sources.py`` knows what the photos show.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from albumen.library.sample.sources import MATE_NATURE_SUBDIR, default_extras_dir

__all__ = ["PACKAGES", "fetch_extras", "main"]

PACKAGES = ("mate-backgrounds",)


def _present(cache: Path) -> bool:
    folder = cache / MATE_NATURE_SUBDIR
    return folder.is_dir() and any(folder.glob("*.jpg"))


def fetch_extras(cache: Path | None = None, timeout_s: float = 600.0) -> tuple[bool, str]:
    """Unpack the extra packages into ``cache`` unless already there; (ok, message). Never raises for a failure."""
    cache = cache or default_extras_dir()
    if _present(cache):
        return True, f"extras already in {cache}"
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            return False, f"{tool} not found: not a Debian-like system; the sample library builds without extras"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="albumen-extras-") as tmp:
        for package in PACKAGES:
            try:
                subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True,
                               timeout=timeout_s)
                debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
                if not debs:
                    return False, f"apt-get download {package} produced no .deb"
                subprocess.run(["dpkg", "-x", str(debs[-1]), str(cache)], check=True, capture_output=True,
                               timeout=timeout_s)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                return False, f"could not fetch {package}: {exc} {detail.decode(errors='replace').strip()}"
    if not _present(cache):
        return False, f"{PACKAGES[0]} unpacked into {cache} but has no {MATE_NATURE_SUBDIR}/*.jpg"
    return True, f"extras unpacked into {cache}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    ok, message = fetch_extras(Path(args[0]) if args else None)
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
