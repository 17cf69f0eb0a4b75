"""The real photographs the sample library is made from, where they live on disk, and what they truthfully show.

Every source is a real photo that ships inside an installable package (scikit-image, scikit-learn, matplotlib) or in
the Debian package ``mate-backgrounds`` when it has been unpacked (optional, see ``extras.py``). Only files present in
the installed wheels are used: scikit-image fetches many of its ``data`` images with pooch on first use, and those are
deliberately absent from this catalogue.

Labels describe scene content as a person would search for it. Face boxes are ``(left, top, right, bottom)`` in
source pixels; they were checked with dlib's CNN detector and MediaPipe face detection (``hog`` says whether dlib's
faster HOG detector also finds the face: it misses the cameraman, who is half hidden behind his camera).

This module knows where sources live and what they show; it knows nothing about layout, EXIF or encoding.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "FaceBox",
    "SourceImage",
    "CATALOGUE",
    "MATE_NATURE_SUBDIR",
    "find_sources",
    "default_extras_dir",
    "SourceError",
]

# Inside an unpacked mate-backgrounds .deb (or an installed one, relative to /).
MATE_NATURE_SUBDIR = "usr/share/backgrounds/mate/nature"


class SourceError(RuntimeError):
    """No usable source photos were found; the message says where we looked."""


@dataclass(frozen=True)
class FaceBox:
    """One visible face: who it is and where, ``(left, top, right, bottom)`` in the pixels it refers to."""

    person: str
    box: tuple[int, int, int, int]
    hog: bool = True  # found by dlib's HOG detector as well as by the CNN / MediaPipe detectors

    def to_json(self) -> dict[str, object]:
        return {"person": self.person, "box": list(self.box), "hog_detectable": self.hog}


@dataclass(frozen=True)
class SourceImage:
    """A real photograph and what it shows. ``path`` is filled in by ``find_sources``."""

    id: str  # "<origin>/<stem>", stable across machines
    origin: str  # "scikit-image", "scikit-learn", "matplotlib", "mate-backgrounds"
    file: str  # path inside the package (or the unpacked .deb)
    description: str
    labels: tuple[str, ...]
    faces: tuple[FaceBox, ...] = ()
    place: str | None = None  # city id where this scene really is (the pagoda is in Beijing, the launch at the Cape)
    screenshot_ok: bool = False  # content that plausibly appears on a phone screen (documents, simple scenes)
    path: Path | None = field(default=None, compare=False)

    @property
    def people(self) -> tuple[str, ...]:
        return tuple(f.person for f in self.faces)

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "file": self.file,
            "description": self.description,
            "labels": list(self.labels),
            "people": list(self.people),
            "faces": [f.to_json() for f in self.faces],
            "place": self.place,
        }


def _sk(stem: str, ext: str, description: str, labels: tuple[str, ...], **kw: object) -> SourceImage:
    return SourceImage(f"skimage/{stem}", "scikit-image", f"skimage/data/{stem}.{ext}", description, labels, **kw)  # type: ignore[arg-type]


def _mate(stem: str, description: str, labels: tuple[str, ...]) -> SourceImage:
    return SourceImage(f"mate/{stem}", "mate-backgrounds", f"{MATE_NATURE_SUBDIR}/{stem}.jpg", description, labels)


CATALOGUE: tuple[SourceImage, ...] = (
    _sk("astronaut", "png", "Astronaut Eileen Collins in her orange flight suit (NASA, public domain)",
        ("person", "portrait", "astronaut", "space", "flag"),
        faces=(FaceBox("Eileen Collins", (170, 70, 268, 175)),)),
    _sk("camera", "png", "A man looking through a camera on a tripod in a field (Lav Varshney, CC0)",
        ("person", "camera", "tripod", "outdoor", "grass", "black and white"),
        faces=(FaceBox("The Cameraman", (189, 115, 276, 199), hog=False),)),
    SourceImage("matplotlib/grace_hopper", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                "Rear Admiral Grace Hopper in uniform (US Navy, public domain)",
                ("person", "portrait", "uniform", "flag"),
                faces=(FaceBox("Grace Hopper", (165, 135, 372, 350)),)),
    _sk("chelsea", "png", "Chelsea the tabby cat, close up", ("cat", "animal", "pet"), screenshot_ok=True),
    _sk("coffee", "png", "A cup of espresso on a saucer with a spoon", ("coffee", "cup", "drink", "food", "table"),
        screenshot_ok=True),
    _sk("rocket", "jpg", "Falcon 9 carrying DSCOVR on the pad at Cape Canaveral, at night (SpaceX, public domain)",
        ("rocket", "space", "launch pad", "night", "sky"), place="cape-canaveral"),
    _sk("motorcycle_left", "png", "A red motorcycle in a workshop (Middlebury stereo, left view)",
        ("motorcycle", "vehicle", "garage", "indoor")),
    _sk("motorcycle_right", "png", "A red motorcycle in a workshop (Middlebury stereo, right view)",
        ("motorcycle", "vehicle", "garage", "indoor")),
    _sk("hubble_deep_field", "jpg", "Hubble eXtreme Deep Field: thousands of galaxies",
        ("space", "galaxy", "stars", "night sky", "astronomy"), screenshot_ok=True),
    _sk("moon", "png", "Surface of the moon, low contrast", ("moon", "space", "astronomy", "black and white")),
    _sk("coins", "png", "Greek coins from Pompeii on a grey background (Brooklyn Museum)",
        ("coins", "money", "museum", "black and white")),
    _sk("page", "png", "A scanned page of printed text", ("document", "text", "page"), screenshot_ok=True),
    _sk("text", "png", "Hand-written text on a board, seen at an angle", ("text", "writing", "black and white"),
        screenshot_ok=True),
    _sk("clock_motion", "png", "A wall clock, blurred by camera motion", ("clock", "blurry", "black and white")),
    _sk("grass", "png", "Close-up of grass", ("grass", "texture", "nature", "black and white")),
    _sk("gravel", "png", "Close-up of gravel", ("gravel", "texture", "ground", "black and white")),
    _sk("brick", "png", "A brick wall", ("brick", "wall", "texture", "black and white")),
    SourceImage("sklearn/china", "scikit-learn", "sklearn/datasets/images/china.jpg",
                "The Tower of Buddhist Incense at the Summer Palace, Beijing, above the lake (danielbuechele, CC BY 2.0)",
                ("temple", "pagoda", "architecture", "landmark", "lake", "trees", "sky"), place="beijing"),
    SourceImage("sklearn/flower", "scikit-learn", "sklearn/datasets/images/flower.jpg",
                "An orange dahlia in front of dark green leaves (vultilion, CC BY 2.0)",
                ("flower", "dahlia", "plant", "nature"), screenshot_ok=True),
    _mate("Aqua", "A water drop splashing into water", ("water", "drop", "splash", "macro")),
    _mate("Blinds", "Backlit green leaf, close up", ("leaf", "plant", "green", "nature", "macro")),
    _mate("Dune", "Dune grass in front of the sea", ("grass", "dune", "beach", "sea", "nature")),
    _mate("FreshFlower", "An orange flower, close up", ("flower", "plant", "nature", "macro")),
    _mate("Garden", "A red and yellow marigold in a garden", ("flower", "garden", "plant", "nature")),
    _mate("GreenMeadow", "Fresh green grass blades", ("grass", "meadow", "nature", "green")),
    _mate("LadyBird", "A ladybird on a grass stem among blue forget-me-nots", ("ladybird", "insect", "flower", "nature")),
    _mate("RainDrops", "Rain drops on green leaves", ("leaf", "rain", "water", "plant", "nature")),
    _mate("Storm", "Storm clouds over a flat landscape and a road", ("storm", "clouds", "sky", "landscape", "road")),
    _mate("TwoWings", "Dandelion seeds in front of orange flowers", ("dandelion", "seeds", "flower", "nature", "macro")),
    _mate("Wood", "Pale wooden planks, close up", ("wood", "texture")),
    _mate("YellowFlower", "A yellow flower, close up", ("flower", "yellow", "plant", "nature")),
)


def default_extras_dir() -> Path:
    """Where ``extras.py`` unpacks optional Debian packages: ``$ALBUMEN_SAMPLE_EXTRAS`` or the user cache dir."""
    env = os.environ.get("ALBUMEN_SAMPLE_EXTRAS")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("albumen")) / "sample-extras"


def _package_root(name: str) -> Path | None:
    """The folder holding package ``name``'s parent directory, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent


def _resolve(source: SourceImage, extras_dirs: tuple[Path, ...]) -> Path | None:
    if source.origin == "mate-backgrounds":
        candidates = [d / source.file for d in extras_dirs]
    else:
        package = source.file.split("/", 1)[0]
        root = _package_root(package)
        candidates = [root / source.file] if root else []
    for path in candidates:
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def find_sources(extras_dirs: tuple[Path, ...] | None = None) -> tuple[SourceImage, ...]:
    """The catalogued photos present on this machine, each with its ``path``; the optional Debian ones when found.

    Args:
        extras_dirs: roots to look for unpacked Debian packages in; default: the extras cache dir and ``/``.
    """
    import dataclasses

    if extras_dirs is None:
        extras_dirs = (default_extras_dir(), Path("/"))
    found = []
    for source in CATALOGUE:
        path = _resolve(source, extras_dirs)
        if path is not None:
            found.append(dataclasses.replace(source, path=path))
    if not any(s.faces for s in found):
        raise SourceError(
            "no source photos with faces found: scikit-image and matplotlib must be installed (looked for "
            + ", ".join(s.file for s in CATALOGUE if s.faces)
            + ")"
        )
    return tuple(found)
