"""Typed quantization configs: one ``LayerScheme`` per weight, a ``QuantConfig`` for a whole model, named presets.

This module knows the names and parameters of the schemes (``int8``, ``int4-g32``, ``pal4-gc16`` ...). It knows
nothing about tensors, kernels or models: the math lives in ``affine.py`` / ``palettize.py``, the swapping in
``apply.py``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "PRESETS",
    "LayerScheme",
    "QuantConfig",
    "parse_scheme",
    "scheme_name",
]

Kind = Literal["int8", "int4", "palette", "none"]
Granularity = Literal["tensor", "channel_group", "block"]


@dataclass(frozen=True)
class LayerScheme:
    """How one weight matrix is compressed.

    ``int8``: symmetric per output channel. ``int4``: group-wise along the input dimension, ``group_size`` weights
    share a scale (and a zero point when ``symmetric`` is False). ``palette``: k-means look-up table of ``2**bits``
    entries, one table per tensor or one per ``channel_group`` consecutive output channels (Core ML's
    "per grouped channel"), on rows first divided by their own max |w| (``per_channel_scale``, Core ML's
    ``enable_per_channel_scale``: one float per row, so rows of different magnitude share a table well);
    granularity ``block``: one LUT per tensor on weights normalised per block of ``group_size`` inputs, with a
    bf16 scale (and offset unless ``symmetric``) per block (a learned NF4; ``palettize.palettize_blocks``).
    ``none`` keeps the float weight.
    """

    kind: Kind = "int4"
    bits: int = 4
    group_size: int = 32
    symmetric: bool = False  # int4: a zero point per group (the scheme `int4-g32` names); True: `int4-g32-sym`
    granularity: Granularity = "tensor"
    channel_group: int = 16
    kmeans_iters: int = 30
    per_channel_scale: bool = True  # palette: rows normalised by their max |w| before k-means (Core ML's option)
    range_search: int = 8  # int4: clipping ratios tried per group (least squared error); 0 = full range

    def __post_init__(self) -> None:
        if self.kind not in ("int8", "int4", "palette", "none"):
            raise ValueError(f"unknown quantization kind {self.kind!r}")
        if self.kind == "int8" and self.bits != 8:
            raise ValueError("int8 means 8 bits")
        if self.kind == "int4" and (self.bits != 4 or self.group_size not in (32, 64, 128, 256)):
            raise ValueError(f"int4 needs bits=4 and group_size in 32/64/128/256, got {self.bits}/{self.group_size}")
        if self.kind == "palette" and self.bits not in (1, 2, 3, 4, 6, 8):
            raise ValueError(f"palette bits must be one of 1,2,3,4,6,8, got {self.bits}")
        if self.kind == "palette" and self.granularity == "block" and self.group_size % 8:
            raise ValueError(f"palette block must be a multiple of 8, got {self.group_size}")
        if self.granularity not in ("tensor", "channel_group", "block"):
            raise ValueError(f"unknown palette granularity {self.granularity!r}")

    @property
    def name(self) -> str:
        return scheme_name(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerScheme:
        return cls(**data)


_INT4 = re.compile(r"^int4-g(\d+)(-asym|-sym)?$")
_PAL = re.compile(r"^pal(\d)(?:-gc(\d+)|-b(\d+)(-sym|-asym)?)?$")


def parse_scheme(name: str) -> LayerScheme:
    """``"int8"``, ``"int4-g32"`` (asymmetric), ``"int4-g64-sym"``, ``"pal4"`` (per tensor), ``"pal3-gc16"``
    (per 16 channels), ``"pal4-b32"`` (LUT + block scales),
    ``"none"`` -> a ``LayerScheme``; anything else is a ``ValueError`` listing what is accepted."""
    text = name.strip().lower()
    if text in ("none", "fp32", "float"):
        return LayerScheme(kind="none", bits=32)
    if text == "int8":
        return LayerScheme(kind="int8", bits=8)
    if m := _INT4.match(text):
        # A zero point per group unless "-sym": the int4 kernel takes zeros at no cost, and the 16 levels then follow
        # each group's own [min, max] (as gpt-fast / torchao int4, GPTQ, AWQ and llama.cpp's Q4_1 / Q4_K do).
        return LayerScheme(kind="int4", bits=4, group_size=int(m.group(1)), symmetric=m.group(2) == "-sym")
    if m := _PAL.match(text):
        if m.group(3):
            return LayerScheme(kind="palette", bits=int(m.group(1)), granularity="block", group_size=int(m.group(3)),
                               symmetric=m.group(4) == "-sym")
        if m.group(2):
            return LayerScheme(kind="palette", bits=int(m.group(1)), granularity="channel_group",
                               channel_group=int(m.group(2)))
        return LayerScheme(kind="palette", bits=int(m.group(1)), granularity="tensor")
    raise ValueError(
        f"unknown scheme {name!r}; expected one of: none, int8, int4-g{{32,64,128}}[-sym|-asym], "
        f"pal{{2,3,4}}[-gcN|-bN[-sym]], "
        f"or a preset: {', '.join(sorted(PRESETS))}"
    )


def scheme_name(s: LayerScheme) -> str:
    """The inverse of ``parse_scheme``."""
    if s.kind == "none":
        return "none"
    if s.kind == "int8":
        return "int8"
    if s.kind == "int4":
        return f"int4-g{s.group_size}" + ("-sym" if s.symmetric else "")
    if s.granularity == "channel_group":
        return f"pal{s.bits}-gc{s.channel_group}"
    if s.granularity == "block":
        return f"pal{s.bits}-b{s.group_size}" + ("-sym" if s.symmetric else "")
    return f"pal{s.bits}"


@dataclass
class QuantConfig:
    """What to do with every weight of a model.

    ``default`` applies to every ``nn.Linear``; ``overrides`` maps a module name (``model.layers.3.mlp.down_proj``)
    to its own scheme (mixed precision); ``skip`` lists names kept in float. ``lm_head`` and ``embedding`` choose the
    schemes of the output projection and the token table (``None`` = keep float). When the two are tied they share
    one quantized table, quantized with the ``lm_head`` scheme.
    """

    default: LayerScheme = field(default_factory=LayerScheme)
    lm_head: LayerScheme | None = field(default_factory=lambda: LayerScheme(kind="int8", bits=8))
    embedding: LayerScheme | None = field(default_factory=lambda: LayerScheme(kind="int8", bits=8))
    overrides: dict[str, LayerScheme] = field(default_factory=dict)
    skip: tuple[str, ...] = ()

    @classmethod
    def from_scheme(cls, name: str) -> QuantConfig:
        """A preset name or a plain scheme name applied to every linear (head and table at int8 unless the
        scheme itself is int8 or wider-than-4-bit)."""
        if name in PRESETS:
            return replace(PRESETS[name])
        scheme = parse_scheme(name)
        if scheme.kind == "none":
            return cls(default=scheme, lm_head=None, embedding=None)
        return cls(default=scheme)

    def scheme_for(self, name: str) -> LayerScheme | None:
        """The scheme of the linear called ``name``, or None to keep it in float."""
        if name in self.skip:
            return None
        if name in self.overrides:
            return self.overrides[name]
        if name == "lm_head" or name.endswith(".lm_head"):
            return self.lm_head
        return None if self.default.kind == "none" else self.default

    def to_dict(self) -> dict[str, Any]:
        return {
            "default": self.default.to_dict(),
            "lm_head": self.lm_head.to_dict() if self.lm_head else None,
            "embedding": self.embedding.to_dict() if self.embedding else None,
            "overrides": {k: v.to_dict() for k, v in self.overrides.items()},
            "skip": list(self.skip),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantConfig:
        def opt(d: dict[str, Any] | None) -> LayerScheme | None:
            return LayerScheme.from_dict(d) if d else None

        return cls(
            default=LayerScheme.from_dict(data["default"]),
            lm_head=opt(data.get("lm_head")),
            embedding=opt(data.get("embedding")),
            overrides={k: LayerScheme.from_dict(v) for k, v in data.get("overrides", {}).items()},
            skip=tuple(data.get("skip", ())),
        )


def _int4_all(group: int, symmetric: bool = False) -> QuantConfig:
    s = LayerScheme(kind="int4", bits=4, group_size=group, symmetric=symmetric)
    return QuantConfig(default=s, lm_head=s, embedding=s)


PRESETS: dict[str, QuantConfig] = {
    # Every matrix, head and token table included, at the same width: the smallest files.
    "int8-all": QuantConfig(default=LayerScheme(kind="int8", bits=8)),
    "int4-g32-all": _int4_all(32),
    "int4-g128-all": _int4_all(128),
}
