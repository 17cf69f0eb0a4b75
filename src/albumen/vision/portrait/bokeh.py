"""Lens-like bokeh: a disc kernel (not a Gaussian) whose radius varies per pixel, with highlight bloom.

The main kernel, ``variable_disc_blur``, sums a disc of per-pixel radius with a summed-area table: the disc is cut
into horizontal strips, each strip is a rectangle, and a rectangle sum is four table look-ups whatever its size. The
cost per pixel is therefore fixed (4 look-ups x strips) and does not grow with the radius. ``bokeh_background`` turns
those sums into a normalised convolution that only averages background pixels, so the subject's colours never smear
into the blurred background (the usual halo of naive portrait blur). ``disc_blur_fft`` is the exact fixed-radius
reference that the benchmark compares against.

All functions are pure tensor functions; they know nothing about masks, faces or files.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

__all__ = [
    "bokeh_background",
    "disc_blur_fft",
    "disc_kernel",
    "disc_strips",
    "highlight_boost",
    "linear_to_srgb",
    "srgb_to_linear",
    "summed_area_table",
    "variable_disc_blur",
]

_GAMMA = 2.2  # a plain power law: close enough to sRGB for blurring, and three times cheaper than the exact curve


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] -> linear light (blurring must average light, not encoded values)."""
    return x.clamp(0.0, 1.0).pow(_GAMMA)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0.0, 1.0).pow(1.0 / _GAMMA)


def highlight_boost(lin: torch.Tensor, threshold: float, gain: float) -> torch.Tensor:
    """Push near-clipped highlights above 1 so that, once spread by the disc, they still read as bright discs.

    A point light in a photo is clipped at 1.0 although the real scene was far brighter; a real lens spreads that
    energy into a bright disc. Without this boost the disc averages the clipped value away and looks dull.

    Args:
        lin: (3, H, W) linear RGB in [0, 1].
        threshold: linear luminance where the boost starts (0..1).
        gain: extra multiplier reached at luminance 1.

    Returns:
        (3, H, W) linear RGB, values above 1 allowed.
    """
    if gain <= 0:
        return lin
    luma = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]  # (H, W)
    t = ((luma - threshold) / max(1.0 - threshold, 1e-6)).clamp(0.0, 1.0)
    return lin * (1.0 + gain * t * t)  # (3, H, W)


@lru_cache(maxsize=16)
def disc_strips(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Cut the unit disc into ``n`` horizontal strips of equal height.

    Returns (edges, half_widths): ``n + 1`` strip edges in [-1, 1] and, per strip, the half-width of the rectangle
    with the same area as the disc inside that strip, so the stacked rectangles keep the disc's area and outline.
    """
    if n < 1:
        raise ValueError("need at least one strip")
    edges = tuple(-1.0 + 2.0 * i / n for i in range(n + 1))

    def area_below(y: float) -> float:  # integral of sqrt(1 - t^2) from -1 to y
        y = max(-1.0, min(1.0, y))
        return 0.5 * (y * math.sqrt(1.0 - y * y) + math.asin(y) + math.pi / 2)

    widths = tuple((area_below(b) - area_below(a)) / (b - a) for a, b in zip(edges[:-1], edges[1:]))
    return edges, widths


def summed_area_table(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (C, H + 1, W + 1) float64 table with S[:, i, j] = sum of x[:, :i, :j].

    float64 because a float32 table of a 0.5 MP image loses the small sums (a 3-pixel disc) to rounding.
    """
    c, h, w = x.shape
    s = torch.zeros(c, h + 1, w + 1, dtype=torch.float64)
    s[:, 1:, 1:] = x.to(torch.float64).cumsum(1).cumsum(2)
    return s


def _strip_offsets(n_radii: int, step: float, strips: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per quantised radius, the (row, col) offsets of the 4 table corners of every strip rectangle.

    Returns (row_off, col_off, reach): two (R, 4 * strips) int64 tables and the largest offset in any direction.
    """
    edges, widths = disc_strips(strips)
    a = torch.arange(n_radii, dtype=torch.float64) * step + 0.5  # (R,) the disc covers centres within radius
    top = -torch.floor(a)  # (R,) first row offset
    bottom = torch.floor(a) + 1  # (R,) one past the last row offset
    rows = torch.stack([torch.floor(a * e + 0.5) for e in edges], dim=1)  # (R, n+1)
    rows = torch.minimum(torch.maximum(rows, top[:, None]), bottom[:, None])
    rows[:, 0], rows[:, -1] = top, bottom  # non-decreasing: strip k spans rows [rows_k, rows_{k+1})
    half = torch.floor(a[:, None] * torch.tensor(widths, dtype=torch.float64)[None, :])  # (R, n)
    r0, r1, c0, c1 = rows[:, :-1], rows[:, 1:], -half, half + 1  # (R, n) each; cols [c0, c1)
    # Rectangle sum = S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]  (signs in _CORNER_SIGNS)
    row_off = torch.stack([r1, r0, r1, r0], dim=-1).reshape(n_radii, -1).to(torch.int64)  # (R, 4n)
    col_off = torch.stack([c1, c1, c0, c0], dim=-1).reshape(n_radii, -1).to(torch.int64)  # (R, 4n)
    return row_off, col_off, int(bottom[-1].item())


_CORNER_SIGNS = (1.0, -1.0, -1.0, 1.0)


def variable_disc_blur(
    x: torch.Tensor, radius: torch.Tensor, strips: int = 7, step: float = 0.125, chunk: int = 32768
) -> torch.Tensor:
    """Sum of ``x`` over a disc of per-pixel radius; pixels outside the image count as zero.

    Args:
        x: (C, H, W) values to sum.
        radius: (H, W) disc radius in pixels (>= 0); radius < 0.5 sums the pixel itself.
        strips: horizontal strips per disc (more = rounder; cost is 4 look-ups per strip per pixel).
        step: radii are quantised to this many pixels, so the corner offsets come from a small table.
        chunk: pixels gathered at once (bounds the temporary memory to chunk * 4 * strips * C doubles).

    Returns:
        (C, H, W) float32 sums. Divide by the same blur of a weight map to get a (normalised) average.
    """
    c, h, w = x.shape
    rq = torch.round(radius.clamp(min=0.0) / step).to(torch.int64).view(-1)  # (H*W,) quantised radius
    row_off, col_off, reach = _strip_offsets(int(rq.max().item()) + 1 if rq.numel() else 1, step, strips)
    # Zero padding by `reach` means no look-up ever leaves the table: no clamping in the hot loop.
    xp = torch.nn.functional.pad(x, (reach, reach, reach, reach))  # (C, H+2p, W+2p)
    stride = w + 2 * reach + 1
    table = summed_area_table(xp).reshape(c, -1).t().contiguous()  # (rows, C): one look-up fetches all channels
    offsets = row_off * stride + col_off  # (R, 4n) flat offset of each corner from the pixel's own entry
    ys = torch.arange(h, dtype=torch.int64).view(h, 1) + reach
    xs = torch.arange(w, dtype=torch.int64).view(1, w) + reach
    base = (ys * stride + xs).view(-1)  # (H*W,)
    signs = torch.tensor(_CORNER_SIGNS * strips, dtype=torch.float64)  # (4n,)
    combine = torch.kron(signs.view(-1, 1), torch.eye(c, dtype=torch.float64))  # (4n * C, C): signed corner sum
    out = torch.empty(h * w, c, dtype=torch.float32)
    for i in range(0, h * w, chunk):
        idx = offsets.index_select(0, rq[i : i + chunk]) + base[i : i + chunk, None]  # (n, 4 * strips)
        vals = table.index_select(0, idx.view(-1)).view(idx.shape[0], -1)  # (n, 4 * strips * C)
        out[i : i + chunk] = vals @ combine  # (n, C)
    return out.t().reshape(c, h, w)


def bokeh_background(
    lin: torch.Tensor,
    background_weight: torch.Tensor,
    radius: torch.Tensor,
    *,
    bloom_threshold: float = 0.7,
    bloom_gain: float = 4.0,
    strips: int = 7,
) -> torch.Tensor:
    """The background as a lens would render it: a normalised disc blur over background pixels only.

    B(x) = sum_{y in disc(x)} w(y) * boost(I(y)) / sum_{y in disc(x)} w(y)  -- normalised convolution: the subject
    (w = 0) contributes nothing, so pixels next to it are filled with nearby background instead of subject colour.

    Args:
        lin: (3, H, W) linear RGB in [0, 1].
        background_weight: (H, W) in [0, 1]; 0 on the subject, 1 on the background.
        radius: (H, W) disc radius in pixels.

    Returns:
        (3, H, W) linear RGB in [0, 1]. Where a disc holds no background at all (deep inside the subject) the value
        falls back to the unblurred pixel; the compositor shows the subject there anyway.
    """
    boosted = highlight_boost(lin, bloom_threshold, bloom_gain)  # (3, H, W)
    w = background_weight.clamp(0.0, 1.0)
    stack = torch.cat([boosted * w, w.unsqueeze(0)], dim=0)  # (4, H, W): weighted colour + weight
    sums = variable_disc_blur(stack, radius, strips)  # (4, H, W)
    den = sums[3:4]
    blurred = sums[:3] / den.clamp(min=1e-6)
    return torch.where(den > 1e-3, blurred, lin).clamp(0.0, 1.0)


def disc_kernel(radius: float) -> torch.Tensor:
    """(2k+1, 2k+1) disc with anti-aliased rim (4x4 supersampled coverage), summing to 1."""
    k = max(int(math.ceil(radius)), 0)
    sub = (torch.arange(4, dtype=torch.float32) + 0.5) / 4 - 0.5  # (4,) sub-pixel offsets
    grid = torch.arange(-k, k + 1, dtype=torch.float32)
    py = (grid.view(-1, 1) + sub.view(1, -1)).view(-1, 1)  # (4(2k+1), 1)
    px = (grid.view(-1, 1) + sub.view(1, -1)).view(1, -1)  # (1, 4(2k+1))
    inside = ((py * py + px * px) <= max(radius, 0.5) ** 2).float()
    kern = inside.view(2 * k + 1, 4, 2 * k + 1, 4).mean(dim=(1, 3))
    return kern / kern.sum()


def disc_blur_fft(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Exact fixed-radius disc blur of (C, H, W) by FFT with zero padding, normalised at the border.

    The reference for ``variable_disc_blur``: same clipping rule at the border (average of in-image pixels only).
    """
    c, h, w = x.shape
    kern = disc_kernel(radius)
    k = kern.shape[0] // 2
    ph, pw = h + 2 * k, w + 2 * k
    kpad = torch.zeros(ph, pw)
    kpad[: 2 * k + 1, : 2 * k + 1] = kern
    kpad = torch.roll(kpad, shifts=(-k, -k), dims=(0, 1))  # kernel centred at the origin
    kf = torch.fft.rfft2(kpad)
    stack = torch.cat([x, torch.ones(1, h, w)], dim=0)  # the ones channel counts in-image weight
    stack = torch.nn.functional.pad(stack, (0, 2 * k, 0, 2 * k))  # (C+1, ph, pw): room so nothing wraps around
    out = torch.fft.irfft2(torch.fft.rfft2(stack) * kf, s=(ph, pw))[:, :h, :w]
    return out[:c] / out[c:].clamp(min=1e-6)
