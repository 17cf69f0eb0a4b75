"""Prompt sets for training and measuring drafters: memory stories grounded in fact records (JSONL of dicts with
kind, start, end, places, people, tags, photo_count), and open-ended requests.

Train and benchmark sets are disjoint: ``split="train"`` takes the first records and the first topic list,
``split="bench"`` the last records and a second topic list. This module only renders text; it knows nothing about
photos beyond the field names of a record, nor about models.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

__all__ = ["grounded_prompts", "open_prompts", "render_record"]

Split = Literal["train", "bench", "train-extra"]

_GROUNDED = (
    "Write a short, warm memory story (4-6 sentences) about this photo collection. Mention the people, the place and "
    "the date.\n\n{facts}",
    "Here are the facts of a day in my photo library. Tell the story of that day in one paragraph, naming who was "
    "there and where it happened.\n\n{facts}",
    "Write a title and a short summary for this album, using the place, the dates and the people.\n\n{facts}",
)

_OPEN_TEMPLATES = (
    "Write a short story about {t}.",
    "Explain {t} in simple words.",
    "Give me three tips about {t}.",
    "Describe {t} in a few sentences.",
)
_OPEN_TEMPLATES_TRAIN_ONLY = (  # more request shapes for training data; the bench set keeps _OPEN_TEMPLATES
    "Write a short poem about {t}.",
    "Tell me a fun fact about {t}.",
    "Write a diary entry about {t}.",
    "What should I know about {t}?",
)
_TOPICS_TRAIN = (
    "a rainy afternoon", "learning to ride a bike", "a lighthouse keeper", "making bread at home", "a lost umbrella",
    "the ocean at night", "planting a vegetable garden", "a train journey through the mountains", "a friendly robot",
    "the first day of school", "a birthday surprise", "autumn leaves", "how rainbows form", "a busy market",
    "keeping a journal", "a snowy village", "an old bookshop", "the moon landing", "a dog who loves to swim",
    "photography for beginners", "a picnic in the park", "why the sky is blue", "a violin lesson", "city lights",
    "a camping trip", "recycling at home", "a secret garden", "the life of a honeybee", "running a marathon",
    "a family dinner", "an island adventure", "how clocks work", "a kite festival", "the desert at sunrise",
    "saving money", "a chess game", "a museum visit", "cooking pasta", "a thunderstorm", "a quiet library",
    # added for a second round of open-ended head data (more topics, no overlap with _TOPICS_BENCH)
    "a hike to a waterfall", "learning to swim", "a neighbourhood bakery", "how volcanoes erupt", "a road trip",
    "a school science fair", "the first snow of winter", "a fishing boat at dawn", "a wedding day",
    "how plants drink water", "a football match", "a mountain cabin", "an ice cream shop", "a long flight",
    "the history of maps", "a street musician", "a country fair", "a lost kitten", "how bread rises",
    "a visit to the zoo", "a night under the stars", "a garage sale", "the sound of rain on a roof",
    "a retirement party", "a ferry crossing", "how bees make honey", "an apple orchard", "a power cut",
    "moving to a new city", "a jazz concert", "a beach at low tide", "a family reunion", "how a camera works",
    "a harvest festival", "the Eiffel Tower", "a forest after rain", "a child's first words", "a ski holiday",
    "a flower market", "the tides", "a village church", "a picnic by the lake", "the life of a lighthouse",
    "a thrift store find", "a hot air balloon ride", "a rainy day indoors", "a spring cleaning",
    "a grandfather's workshop", "a carnival at night", "how trains run on time", "a coral reef",
    "a mountain pass", "a surprise visit", "a local library", "how to plan a trip", "the first day of spring",
    "a bike ride by the sea", "a quiet morning coffee", "a castle ruin", "an afternoon at the museum",
)
_TOPICS_TRAIN_EXTRA = (  # a third round of open-ended head data ("train-extra"): none shared with the other lists
    "a farmers' market in spring", "how airplanes fly", "a rainy bus ride", "a treehouse", "learning a new language",
    "a sunset over the harbour", "how glaciers move", "a midnight snack", "a broken bicycle", "an old clock tower",
    "a school play", "how the heart works", "a foggy morning", "a pottery class", "a lemonade stand",
    "a walk in the snow", "how recycling plants work", "a jigsaw puzzle", "a marathon runner's last mile",
    "a tiny apartment", "how to care for a houseplant", "a thunderstorm at sea", "a vintage car", "a paper airplane",
    "a summer job", "how coffee is made", "a crowded train station", "a quiet beach in winter", "a board game night",
    "a letter from a friend", "how earthquakes happen", "a bakery at dawn", "an owl in the forest", "a tennis match",
    "a city park in autumn", "how solar panels work", "a birthday cake disaster", "a cottage by the sea",
    "a science museum", "a school reunion", "how fireflies glow", "a long walk home", "a windy day",
    "a camping stove", "a music festival", "how to make friends", "a mountain lake", "a snow day",
    "a new pair of shoes", "how tea is grown", "a photo booth", "a lost wallet", "an evening in Venice",
    "the first cup of coffee", "a storm over the fields", "how wind turbines work", "a fox in the garden",
    "a dance class", "a roadside diner", "a rainy weekend", "how ships float", "a hedgehog", "a vegetable soup",
    "a quiet village square", "a first concert", "how the seasons change", "a picnic blanket", "a sailing lesson",
    "a pumpkin patch", "a walk through a vineyard", "how memory works", "a postcard from Rome", "a kitchen garden",
    "a snowman", "a birdwatching trip", "how volcanic islands form", "a tram ride", "a cozy reading nook",
    "a lost glove", "a family photo album", "how sound travels", "a fishing trip with dad", "a lighthouse in a storm",
    "a bonfire on the beach", "an art gallery", "how maps are made today", "a mountain sunrise", "a cat burglar",
    "a homemade pizza", "a flea market", "how the internet works", "a garden party", "a canoe trip",
    "a winter market", "a bus stop in the rain", "how seeds sprout", "a street food stall", "a first job interview",
    "a kayak on a calm lake", "a costume party", "how stars are born", "a field of sunflowers", "a bakery queue",
    "an old typewriter", "a night train", "how batteries work", "a hidden beach", "a wildflower meadow",
    "a city rooftop", "a lazy Sunday", "how penguins survive the cold", "a scrapbook", "a duck pond",
    "a school trip to the coast", "a quiet hotel lobby", "how ice skates glide", "a family road trip",
)
_TOPICS_BENCH = (
    "a walk along the river", "a grandmother's recipe", "the northern lights", "building a sandcastle",
    "a sleepy cat", "how bicycles stay upright", "a summer festival", "an old photograph",
)


def render_record(r: dict[str, Any]) -> str:
    """One fact per line, as a user would paste it."""
    places = "; ".join(
        ", ".join(str(p[k]) for k in ("city", "region", "country") if p.get(k)) for p in r.get("places", [])
    )
    dates = r.get("start", "") if r.get("start") == r.get("end") else f"{r.get('start', '')} to {r.get('end', '')}"
    return "\n".join([
        f"Event: {r.get('kind', 'photos')}",
        f"Dates: {dates}",
        f"Places: {places or 'unknown'}",
        "People: " + (", ".join(r.get("people", [])) or "none"),
        "Scenes: " + ", ".join(r.get("tags", [])),
        f"Photos: {r.get('photo_count', 0)}",
    ])


def grounded_prompts(facts_path: str | Path, n: int, split: Split = "train", seed: int = 0) -> list[str]:
    """``n`` story requests over records of ``facts_path`` (train: from the start, bench: from the end)."""
    lines = [line for line in Path(facts_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    pool = records[: max(0, len(records) - 100)] if split == "train" else records[-100:]
    if not pool:
        raise ValueError(f"{facts_path}: not enough records for the {split} split")
    rng = random.Random(seed)
    return [rng.choice(_GROUNDED).format(facts=render_record(pool[i % len(pool)])) for i in range(n)]


def open_prompts(n: int, split: Split = "train", seed: int = 0) -> list[str]:
    """``n`` open-ended requests (topics differ between splits; "train-extra": more training topics)."""
    topics = {"train": _TOPICS_TRAIN, "train-extra": _TOPICS_TRAIN_EXTRA}.get(split, _TOPICS_BENCH)
    templates = _OPEN_TEMPLATES if split == "bench" else _OPEN_TEMPLATES + _OPEN_TEMPLATES_TRAIN_ONLY
    pairs = [(t, tpl) for t in topics for tpl in templates]
    random.Random(seed).shuffle(pairs)
    return [tpl.format(t=t) for t, tpl in (pairs * (n // len(pairs) + 1))[:n]]
