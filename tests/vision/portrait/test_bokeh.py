"""Bokeh kernels against exact references: the strip-disc sum vs an FFT disc, and the layered path vs the exact one."""

from __future__ import annotations

import pytest
import torch

from albumen.vision.portrait.bokeh import (
    bokeh_background,
    disc_blur_fft,
    disc_kernel,
    disc_strips,
    highlight_boost,
    summed_area_table,
    variable_disc_blur,
)


def test_disc_strips_keep_the_disc_area() -> None:
    edges, widths = disc_strips(7)
    area = sum(2 * w * (b - a) for a, b, w in zip(edges[:-1], edges[1:], widths))
    assert area == pytest.approx(torch.pi, rel=1e-9)


def test_summed_area_table_matches_a_direct_sum() -> None:
    x = torch.rand(2, 9, 11, generator=torch.Generator().manual_seed(0))
    s = summed_area_table(x)
    assert s.shape == (2, 10, 12)
    assert float(s[1, 4, 7]) == pytest.approx(float(x[1, :4, :7].sum()), rel=1e-6)


def test_disc_kernel_is_round_and_normalised() -> None:
    k = disc_kernel(5.0)
    assert k.shape == (11, 11)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(k[5, 5]) > 0 and float(k[0, 0]) == 0.0  # centre inside, corner outside: a disc, not a box
    assert torch.allclose(k, k.t()) and torch.allclose(k, k.flip(0))


@pytest.mark.parametrize("radius", [0.3, 3.0, 6.5])
def test_variable_disc_blur_matches_fft_disc(radius: float) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 60, 70, generator=g)
    sums = variable_disc_blur(torch.cat([x, torch.ones(1, 60, 70)]), torch.full((60, 70), radius))
    ours = sums[:3] / sums[3:]
    ref = disc_blur_fft(x, radius)
    assert float((ours - ref).abs().mean()) < 0.02  # strips approximate the round rim; the mean error stays small


def test_highlight_boost_only_touches_highlights() -> None:
    lin = torch.tensor([0.1, 0.5, 1.0]).view(1, 1, 3).expand(3, 1, 3).contiguous()
    out = highlight_boost(lin, threshold=0.6, gain=4.0)
    assert torch.equal(out[:, :, :2], lin[:, :, :2])
    assert float(out[0, 0, 2]) == pytest.approx(5.0)


def test_bokeh_background_never_takes_subject_colour() -> None:
    lin = torch.zeros(3, 40, 40)
    lin[0] = 1.0  # red background
    lin[:, 15:25, 15:25] = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1)  # blue subject
    weight = torch.ones(40, 40)
    weight[15:25, 15:25] = 0.0
    out = bokeh_background(lin, weight, torch.full((40, 40), 6.0), bloom_gain=0.0)
    ring = weight.bool() & (torch.nn.functional.max_pool2d((1 - weight)[None, None], 9, 1, 4)[0, 0] > 0)
    assert float(out[2][ring].max()) < 1e-4  # no blue leaks into the background next to the subject
