"""The fast layered bokeh against the exact per-pixel-radius kernel and the exact FFT disc."""

from __future__ import annotations

import numpy as np
import torch

from albumen.vision.portrait.bokeh import bokeh_background, disc_blur_fft
from albumen.vision.portrait.layered import layer_radii, layered_bokeh


def test_layer_radii_span_zero_to_max() -> None:
    r = layer_radii(10.0, max_layers=8)
    assert r[0] == 0.0 and r[-1] == 10.0 and len(r) == 8
    assert len(layer_radii(0.0, 8)) == 2


def test_constant_radius_equals_the_fft_disc() -> None:
    rng = np.random.default_rng(0)
    lin = rng.random((50, 60, 3)).astype(np.float32) * 0.5  # below the bloom threshold: a plain disc average
    radius = np.full((50, 60), 4.5, dtype=np.float32)  # exactly the last layer
    ours = layered_bokeh(lin, np.ones((50, 60), np.float32), radius, bloom_gain=0.0)
    ref = disc_blur_fft(torch.from_numpy(lin).permute(2, 0, 1), 4.5).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_variable_radius_is_close_to_the_exact_kernel() -> None:
    rng = np.random.default_rng(1)
    h, w = 60, 80
    lin = rng.random((h, w, 3)).astype(np.float32)
    weight = np.ones((h, w), np.float32)
    weight[20:40, 30:50] = 0.0
    radius = np.tile(np.linspace(0.0, 9.0, w, dtype=np.float32), (h, 1))  # blur grows left to right
    ours = layered_bokeh(lin, weight, radius, bloom_gain=2.0, bloom_threshold=0.7)
    exact = bokeh_background(
        torch.from_numpy(lin).permute(2, 0, 1), torch.from_numpy(weight), torch.from_numpy(radius),
        bloom_threshold=0.7, bloom_gain=2.0, strips=15,
    ).permute(1, 2, 0).numpy()
    bg = weight > 0
    assert float(np.abs(ours - exact)[bg].mean()) < 0.03  # layers interpolate between exact discs


def test_highlights_bloom_into_bright_discs() -> None:
    lin = np.full((41, 41, 3), 0.05, dtype=np.float32)
    lin[20, 20] = 1.0  # one clipped point light
    radius = np.full((41, 41), 6.0, dtype=np.float32)
    plain = layered_bokeh(lin, np.ones((41, 41), np.float32), radius, bloom_gain=0.0)
    bloom = layered_bokeh(lin, np.ones((41, 41), np.float32), radius, bloom_gain=4.0)
    assert bloom[20, 24, 0] - 0.05 > 4 * (plain[20, 24, 0] - 0.05)  # the light keeps (1 + gain) x its energy
    assert bloom[20, 24, 0] > bloom[20, 30, 0]  # inside the disc, not outside
    assert abs(bloom[20, 25, 0] - bloom[20, 21, 0]) < 1e-3  # flat inside the disc (a Gaussian would fall off)
