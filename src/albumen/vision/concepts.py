"""ImageNet-1k class names and the map from its 1000 classes to friendly photo concepts.

Class names ship as ``data/imagenet_classes.tsv`` (synset, WordNet lemmas, WordNet gloss), generated once from timm's
``imagenet_synsets.txt`` / ``imagenet_synset_to_lemma.txt`` / ``imagenet_synset_to_definition.txt`` so nothing is
downloaded at run time. A concept's score is the summed probability of its member classes (a class may belong to
several concepts: "alp" is both mountains and snow). This module knows names and sets of class indices; it knows
nothing about models or images.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["CONCEPTS", "ImagenetClass", "concept_indices", "concept_scores", "imagenet_classes"]


@dataclass(frozen=True)
class ImagenetClass:
    index: int
    synset: str
    names: tuple[str, ...]  # WordNet lemmas, most common first
    gloss: str

    @property
    def name(self) -> str:
        return self.names[0]


def imagenet_classes() -> list[ImagenetClass]:
    """The 1000 classes in the classifier's output order (read from the package data on each call)."""
    text = resources.files("albumen.vision").joinpath("data/imagenet_classes.tsv").read_text(encoding="utf-8")
    out: list[ImagenetClass] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        synset, lemmas, gloss = line.split("\t")
        out.append(ImagenetClass(len(out), synset, tuple(n.strip() for n in lemmas.split(",")), gloss))
    if len(out) != 1000:
        raise RuntimeError(f"imagenet_classes.tsv has {len(out)} classes, expected 1000")
    return out


def _r(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b + 1))


# concept -> class indices (ranges for the big contiguous WordNet groups) and first lemmas (resolved by name so the
# table stays readable; a name that matches no class is an error caught by the tests).
_DOGS, _CATS = _r(151, 268), _r(281, 285)
_BIRDS = _r(7, 24) + _r(80, 100) + _r(127, 146)
_FISH = _r(0, 6) + _r(389, 397)
CONCEPTS: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "dog": (_DOGS, ()),
    "cat": (_CATS, ()),
    "pets": (_DOGS + _CATS, ("hamster", "guinea pig", "goldfish", "Angora")),
    "bird": (_BIRDS, ()),
    "wildlife": (_r(0, 150) + _r(269, 280) + _r(286, 398), ()),
    "insect": (_r(300, 326), ()),
    "beach": ((), ("seashore", "sandbar", "bikini", "swimming trunks", "maillot", "sunscreen", "catamaran")),
    "sea": (
        _FISH + _r(107, 126) + _r(147, 150),
        ("seashore", "sandbar", "promontory", "breakwater", "coral reef", "scuba diver", "snorkel", "wreck",
         "pier", "liner", "container ship", "schooner", "yawl", "trimaran", "catamaran", "speedboat", "lifeboat"),
    ),
    "underwater": (_FISH + _r(107, 126), ("coral reef", "scuba diver", "snorkel")),
    "lake": ((), ("lakeside", "boathouse", "canoe", "dam", "paddle")),
    "boat": ((), ("canoe", "yawl", "catamaran", "trimaran", "schooner", "liner", "speedboat", "fireboat", "lifeboat",
                  "gondola", "container ship", "aircraft carrier", "submarine", "paddlewheel", "pirate", "wreck")),
    "mountains": ((), ("alp", "cliff", "valley", "volcano", "promontory", "mountain tent", "bighorn", "ibex")),
    "snow": ((), ("alp", "ski", "snowmobile", "snowplow", "dogsled", "bobsled", "ski mask", "mitten")),
    "landscape": ((), ("alp", "cliff", "valley", "volcano", "lakeside", "seashore", "geyser", "promontory",
                       "sandbar", "rapeseed")),
    "flowers": ((), ("daisy", "yellow lady's slipper", "rapeseed", "hip", "pot", "vase")),
    "mushrooms": (_r(991, 997) + (947,), ()),
    "food": (
        _r(923, 965),
        ("bakery", "confectionery", "butcher shop", "restaurant", "dining table", "wok", "frying pan", "Dutch oven"),
    ),
    "fruit": (_r(948, 957), ()),
    "vegetables": (_r(936, 947), ()),
    "drinks": ((), ("red wine", "espresso", "cup", "eggnog", "coffee mug", "beer bottle", "beer glass",
                    "wine bottle", "goblet", "pop bottle", "whiskey jug", "cocktail shaker", "water bottle",
                    "espresso maker", "coffeepot", "teapot")),
    "city": ((), ("streetcar", "cab", "trolleybus", "traffic light", "street sign", "parking meter", "police van",
                  "limousine", "minibus", "pay-phone", "manhole cover", "fire engine", "garbage truck", "school bus",
                  "cinema", "grocery store", "barbershop", "shoe shop", "toyshop", "bookshop", "tobacco shop",
                  "steel arch bridge", "suspension bridge", "viaduct", "water tower", "triumphal arch")),
    "architecture": ((), ("church", "mosque", "palace", "castle", "monastery", "dome", "bell cote", "stupa",
                          "triumphal arch", "obelisk", "tile roof", "thatch", "barn", "greenhouse", "library",
                          "planetarium", "cliff dwelling", "megalith", "prison", "fountain", "steel arch bridge",
                          "suspension bridge", "viaduct", "vault", "altar", "totem pole")),
    "car": ((), ("sports car", "convertible", "cab", "limousine", "minivan", "jeep", "beach wagon", "Model T", "racer",
                 "pickup", "police van", "ambulance", "car wheel", "grille", "go-kart", "recreational vehicle",
                 "moving van", "tow truck", "trailer truck", "minibus", "car mirror")),
    "train": ((), ("bullet train", "electric locomotive", "steam locomotive", "freight car", "passenger car",
                   "streetcar")),
    "aircraft": ((), ("airliner", "warplane", "airship", "wing", "space shuttle", "parachute", "missile")),
    "bicycle": ((), ("mountain bike", "bicycle-built-for-two", "tricycle", "unicycle", "moped", "motor scooter")),
    "sports": ((), ("ballplayer", "baseball", "basketball", "soccer ball", "rugby ball", "volleyball",
                    "tennis ball", "golf ball", "racket", "football helmet", "croquet ball", "ping-pong ball", "puck",
                    "balance beam", "horizontal bar", "parallel bars", "dumbbell", "barbell", "punching bag", "ski",
                    "scoreboard", "golfcart", "crash helmet")),
    "music": ((), ("accordion", "acoustic guitar", "banjo", "bassoon", "cello", "cornet", "drum", "electric guitar",
                   "flute", "French horn", "gong", "grand piano", "harmonica", "harp", "marimba", "maraca", "oboe",
                   "ocarina", "organ", "panpipe", "sax", "steel drum", "trombone", "upright", "violin", "stage",
                   "microphone")),
    "home": ((), ("studio couch", "four-poster", "bookcase", "wardrobe", "china cabinet", "dining table", "desk",
                  "rocking chair", "quilt", "pillow", "table lamp", "lampshade", "window shade", "home theater",
                  "entertainment center", "television", "fire screen", "refrigerator", "stove", "microwave",
                  "dishwasher", "washbasin", "bathtub", "toilet seat", "shower curtain", "doormat", "patio")),
    "computer": ((), ("laptop", "desktop computer", "monitor", "screen", "computer keyboard", "mouse", "notebook",
                      "iPod", "cellular telephone", "hand-held computer", "remote control", "modem", "printer",
                      "space bar", "typewriter keyboard")),
    "document": ((), ("menu", "book jacket", "comic book", "crossword puzzle", "web site", "envelope", "binder",
                      "street sign", "scoreboard")),
    "celebration": ((), ("balloon", "candle", "Christmas stocking", "maypole", "pinwheel", "jack-o'-lantern",
                         "theater curtain", "carousel")),
    "wedding": ((), ("groom", "gown", "suit", "bow tie", "altar", "church")),
    "baby": ((), ("bassinet", "cradle", "crib", "diaper", "bib", "nipple", "teddy")),
    "garden": ((), ("lawn mower", "greenhouse", "picket fence", "worm fence", "pot", "rain barrel", "birdhouse",
                    "park bench", "swing", "daisy")),
    "farm": ((), ("barn", "tractor", "harvester", "thresher", "plow", "hay", "ox", "hog", "ram", "oxcart", "corn",
                  "sorrel", "llama")),
    "camping": ((), ("mountain tent", "sleeping bag", "yurt", "lakeside", "canoe")),
    "space": ((), ("space shuttle", "radio telescope", "planetarium", "missile", "projectile")),
}


def concept_indices(classes: list[ImagenetClass] | None = None) -> dict[str, np.ndarray]:
    """concept -> sorted unique int64 class indices. Raises ValueError for a name that matches no class."""
    classes = classes or imagenet_classes()
    by_name: dict[str, list[int]] = {}
    for c in classes:
        by_name.setdefault(c.name, []).append(c.index)
    out: dict[str, np.ndarray] = {}
    for concept, (indices, names) in CONCEPTS.items():
        idx = list(indices)
        for name in names:
            if name not in by_name:
                raise ValueError(f"concept {concept!r}: no ImageNet class named {name!r}")
            idx.extend(by_name[name])
        out[concept] = np.unique(np.asarray(idx, dtype=np.int64))
    return out


def concept_scores(probs: np.ndarray, indices: dict[str, np.ndarray]) -> np.ndarray:
    """Concept scores (B, K) from class probabilities (B, 1000): summed member probabilities, clipped to [0, 1].

    Columns follow the order of ``indices``.
    """
    probs = np.asarray(probs, dtype=np.float32)
    cols = [probs[:, idx].sum(axis=1) for idx in indices.values()]  # K x (B,)
    return np.clip(np.stack(cols, axis=1), 0.0, 1.0)  # (B, K)
