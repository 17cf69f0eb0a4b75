"""Content hashes (exact duplicates) and perceptual hashes (near duplicates), and near-duplicate grouping.

- ``content_hash``: sha256 of the file bytes, ``"sha256:<hex>"``. Two files with the same hash are one photo.
- ``perceptual_hash``: the 64-bit DCT hash (pHash, Zauner 2010): grey 32x32, 2-D DCT-II, keep the 8x8 lowest
  frequencies, one bit per coefficient above their median. Robust to resizing, recompression and small colour or
  crop changes, so bursts and edited copies land within a few bits of each other.
- ``group_near_duplicates``: photos whose hashes differ in at most ``max_distance`` bits are linked; connected
  components are the groups (union-find), each named after its smallest photo id.

Pure functions of bytes, images and arrays; no files, no database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["content_hash", "perceptual_hash", "hamming", "group_near_duplicates", "NEAR_DUPLICATE_BITS"]

# Of 64 bits. Measured on 8 scikit-image photos: half size, JPEG q40, +15% brightness, +40% saturation: 0 bits;
# a 5% crop: 8-18; a 10% crop: 16-28; two different photos: 24-38 (smallest of 28 pairs: 24).
NEAR_DUPLICATE_BITS = 12
_HASH_SIDE = 8
_DCT_SIDE = 32


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II basis: ``C @ x`` is the DCT of column vector x. (n, n)"""
    k = np.arange(n)[:, None]  # (n, 1) frequency
    i = np.arange(n)[None, :]  # (1, n) sample
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


def perceptual_hash(image: Image.Image) -> str:
    """64-bit pHash of ``image`` as 16 hex digits."""
    # reducing_gap: box-reduce by an integer factor first, then Lanczos; ~3x cheaper on a 256 px thumbnail and
    # within 0-4 bits (mean 0.4) of a plain Lanczos resize, far below NEAR_DUPLICATE_BITS.
    grey = image.convert("L").resize((_DCT_SIDE, _DCT_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    pixels = np.asarray(grey, dtype=np.float64)  # (32, 32)
    c = _dct_matrix(_DCT_SIDE)
    dct = c @ pixels @ c.T  # (32, 32) 2-D DCT-II
    low = dct[:_HASH_SIDE, :_HASH_SIDE]  # (8, 8) lowest frequencies, DC included
    bits = (low > np.median(low)).flatten()  # (64,) the rule: above the median -> 1
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def group_near_duplicates(
    photo_ids: Sequence[int], hashes: Sequence[str], max_distance: int = NEAR_DUPLICATE_BITS, *, block: int = 512
) -> dict[int, int]:
    """Map every photo id to its group id (the smallest id among photos linked by <= ``max_distance`` bits).

    All pairs are compared in blocks with XOR + popcount, O(N^2 / 2) 64-bit operations: ~0.3 s for 10,000 photos.
    Singletons map to themselves.
    """
    if len(photo_ids) != len(hashes):
        raise ValueError("photo_ids and hashes must have the same length")
    n = len(photo_ids)
    ids = np.asarray(photo_ids, dtype=np.int64)  # (N,)
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)  # (N,)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving
            i = int(parent[i])
        return i

    for start in range(0, n, block):
        rows = values[start : start + block]  # (b,)
        dist = np.bitwise_count(rows[:, None] ^ values[None, :])  # (b, N) differing bits
        close_i, close_j = np.nonzero(dist <= max_distance)
        for i, j in zip(close_i + start, close_j):
            if j <= i:
                continue
            ri, rj = find(int(i)), find(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    result: dict[int, int] = {}
    for members in groups.values():
        leader = int(ids[members].min())
        for m in members:
            result[int(ids[m])] = leader
    return result
