from __future__ import annotations

import pytest

from albumen.vision.portrait.config import APERTURE_RANGE, PORTRAIT_PRESETS, PortraitConfig, parse_focus


def test_defaults_and_presets_are_valid() -> None:
    assert PortraitConfig().aperture == 2.8
    assert set(PORTRAIT_PRESETS) == {"natural", "dramatic", "subtle"}
    assert PORTRAIT_PRESETS["dramatic"].aperture < PORTRAIT_PRESETS["subtle"].aperture


@pytest.mark.parametrize("aperture", [1.0, 22.0])
def test_aperture_outside_range_is_a_clear_error(aperture: float) -> None:
    with pytest.raises(ValueError, match=f"f/{APERTURE_RANGE[0]:g}..f/{APERTURE_RANGE[1]:g}"):
        PortraitConfig(aperture=aperture)


def test_replace_validates() -> None:
    assert PortraitConfig().replace(aperture=1.4).aperture == 1.4
    with pytest.raises(ValueError):
        PortraitConfig().replace(focus=(1.5, 0.2))


@pytest.mark.parametrize("text,expected", [("0.5,0.35", (0.5, 0.35)), (" 0 , 1 ", (0.0, 1.0))])
def test_parse_focus(text: str, expected: tuple[float, float]) -> None:
    assert parse_focus(text) == expected


@pytest.mark.parametrize("text", ["0.5", "a,b", "0.5,1.2", "1,2,3"])
def test_parse_focus_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="focus"):
        parse_focus(text)
