"""Content hash, pHash and near-duplicate grouping."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from albumen.library.hashing import content_hash, group_near_duplicates, hamming, perceptual_hash


def _real_photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())  # a real photo of a cat (scikit-image)


def _recompress(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def test_content_hash_is_sha256_of_the_bytes() -> None:
    assert content_hash(b"abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_phash_is_robust_to_resize_recompress_and_small_edits_but_tells_photos_apart() -> None:
    cat = _real_photo()
    base = perceptual_hash(cat)
    assert len(base) == 16
    edits = {
        "half size": cat.resize((cat.width // 2, cat.height // 2)),
        "jpeg q40": _recompress(cat, 40),
        "brighter": ImageEnhance.Brightness(cat).enhance(1.15),
        "small crop": cat.crop((8, 6, cat.width - 8, cat.height - 6)),
    }
    for name, img in edits.items():
        assert hamming(base, perceptual_hash(img)) <= 8, name
    from skimage import data

    others = [data.astronaut(), data.coffee(), data.rocket()]
    for arr in others:
        assert hamming(base, perceptual_hash(Image.fromarray(arr))) > 16


def test_grouping_is_transitive_and_named_after_the_smallest_id() -> None:
    hashes = ["0000000000000000", "0000000000000007", "000000000000007f", "ffffffffffffffff", "fffffffffffffff0"]
    ids = [50, 10, 30, 7, 99]
    groups = group_near_duplicates(ids, hashes, max_distance=4, block=2)
    # 50~10 (3 bits), 10~30 (4 bits) -> one chain even though 50 and 30 differ by 7 bits
    assert groups == {50: 10, 10: 10, 30: 10, 7: 7, 99: 7}


def test_grouping_matches_brute_force_on_random_hashes() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 40, dtype=np.int64)
    hashes = [f"{int(b):016x}" for b in base] + [f"{int(b) ^ 0b101:016x}" for b in base[:10]]
    ids = list(range(1, len(hashes) + 1))
    groups = group_near_duplicates(ids, hashes, max_distance=3, block=7)
    for i, a in enumerate(hashes):
        for j, b in enumerate(hashes):
            if hamming(a, b) <= 3:
                assert groups[ids[i]] == groups[ids[j]]
    assert len(set(groups.values())) == 40


def test_grouping_validates_lengths() -> None:
    with pytest.raises(ValueError):
        group_near_duplicates([1, 2], ["00"])
    assert group_near_duplicates([], []) == {}
