"""Tests for albumen.vision.brisque and albumen.vision.quality on real photos, blurred and re-exposed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from albumen.vision.base import PhotoInput
from albumen.vision.brisque import BrisqueModel, aggd_fit, brisque_features
from albumen.vision.quality import QualityAnalyzer, QualityConfig, laplacian_variance, overall_score

HAVE_BRISQUE = importlib.util.find_spec("brisque") is not None


def _variants(path: Path, tmp: Path) -> dict[str, Path]:
    from PIL import Image, ImageEnhance, ImageFilter

    im = Image.open(path).convert("RGB")
    out = {"sharp": path}
    for name, img in [("blur", im.filter(ImageFilter.GaussianBlur(3))),
                      ("dark", ImageEnhance.Brightness(im).enhance(0.15)),
                      ("bright", ImageEnhance.Brightness(im).enhance(3.0))]:
        out[name] = tmp / f"{name}.png"
        img.save(out[name])
    return out


def test_laplacian_variance_is_zero_on_flat_and_high_on_edges() -> None:
    assert laplacian_variance(np.full((20, 20), 128.0)) == 0.0
    checker = (np.indices((20, 20)).sum(0) % 2) * 255.0
    assert laplacian_variance(checker) > 1e4


def test_aggd_fit_recovers_gaussian_shape(rng: np.random.Generator) -> None:
    alpha, mean, l2, r2 = aggd_fit(rng.normal(0, 1, 200_000))
    assert alpha == pytest.approx(2.0, abs=0.05)  # a Gaussian is a generalised Gaussian with shape 2
    assert abs(mean) < 0.02 and l2 == pytest.approx(1.0, abs=0.02) and r2 == pytest.approx(1.0, abs=0.02)


def test_overall_score_orders_good_and_bad() -> None:
    assert overall_score(10, 800, "ok", 100) > overall_score(70, 800, "ok", 100) > overall_score(70, 20, "under", 100)
    assert 0.0 <= overall_score(None, 0.0, "over", 100) <= 1.0


def test_blur_and_exposure_without_brisque(photos: list[PhotoInput], tmp_path: Path) -> None:
    v = _variants(photos[0].path, tmp_path)
    analyzer = QualityAnalyzer(QualityConfig(use_brisque=False))
    res = {name: a.payload for name, a in zip(v, analyzer.predict([PhotoInput(i, p) for i, p in enumerate(v.values())]))}
    assert res["sharp"]["sharpness"] > 3 * res["blur"]["sharpness"] and res["blur"]["blurry"]
    assert res["dark"]["exposure"] == "under" and res["bright"]["exposure"] == "over"
    assert res["sharp"]["exposure"] == "ok" and res["sharp"]["brisque"] is None
    assert res["sharp"]["score"] > res["blur"]["score"]
    assert analyzer.model_id == "laplacian"


def test_bad_file_is_one_error(photos: list[PhotoInput]) -> None:
    results = QualityAnalyzer(QualityConfig(use_brisque=False)).predict(photos[-1:] + photos[:1])
    assert "error" in results[0].payload and "sharpness" in results[1].payload


@pytest.mark.skipif(not HAVE_BRISQUE, reason="brisque model files not installed")
def test_brisque_prefers_sharp_photos(photos: list[PhotoInput], tmp_path: Path) -> None:
    v = _variants(photos[1].path, tmp_path)
    analyzer = QualityAnalyzer()
    sharp, blur = (a.payload for a in analyzer.predict([PhotoInput(1, v["sharp"]), PhotoInput(2, v["blur"])]))
    assert analyzer.model_id == "brisque-live+laplacian"
    assert sharp["brisque"] + 20 < blur["brisque"]
    assert brisque_features(np.random.default_rng(0).random((64, 64))).shape == (36,)


@pytest.mark.skipif(not (HAVE_BRISQUE and importlib.util.find_spec("libsvm")), reason="libsvm not installed")
def test_numpy_svr_matches_libsvm(rng: np.random.Generator) -> None:
    from brisque import BRISQUE
    from libsvm import svmutil

    model, ref = BrisqueModel.from_wheel(), BRISQUE(url=False)
    for _ in range(3):
        feats = model.feat_min + rng.random(36) * (model.feat_max - model.feat_min)
        scaled = [float(x) for x in ref.scale_features(list(feats))]
        nodes, _ = svmutil.gen_svm_nodearray(scaled, isKernel=False)
        expected = svmutil.libsvm.svm_predict_probability(ref.model, nodes, (svmutil.c_double * 1)())
        assert model.score(feats) == pytest.approx(expected, abs=1e-6)
