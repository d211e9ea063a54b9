"""FID and diversity of feature sets, as Bailando's ``utils/metrics_new.py`` computes them
(``quantized_metrics``, ``normalize``, ``calc_fid``, ``calculate_avg_distance``).

Both sets are normalised by the *reference* set's per-dimension mean and standard deviation
(population std, plus 1e-10), exactly as Bailando does for FID_k/FID_g and Div_k/Div_g.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.spatial.distance import pdist

STD_EPS = 1e-10
SQRTM_EPS = 1e-5


def _as_set(features, name: str) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"{name} must be an (N, D) array with N >= 2, got shape {f.shape}")
    return f


def normalise(features, reference_features) -> tuple[np.ndarray, np.ndarray]:
    """``(features, reference_features)``, both scaled by the reference set's mean and std + 1e-10."""
    ref = _as_set(reference_features, "reference_features")
    f = _as_set(features, "features")
    if f.shape[1] != ref.shape[1]:
        raise ValueError(f"feature sizes differ: {f.shape[1]} and {ref.shape[1]}")
    mean, std = ref.mean(axis=0), ref.std(axis=0) + STD_EPS
    return (f - mean) / std, (ref - mean) / std


def fid(features, reference_features) -> float:
    """Fréchet distance between the Gaussians fitted to `features` and `reference_features`
    (N, D), after normalising both by the reference set's statistics.

    The matrix square root is ``scipy.linalg.sqrtm`` of ``cov(features) @ cov(reference)``; as in
    the reference, when it is not finite the product is recomputed with 1e-5 added to both
    covariance diagonals. The reference keeps a complex square root when its imaginary part is
    small (and takes the real part otherwise); either way its published value is the real part,
    which is what this returns.
    """
    f, ref = normalise(features, reference_features)
    mu1, mu2 = f.mean(axis=0), ref.mean(axis=0)
    sigma1, sigma2 = np.cov(f, rowvar=False), np.cov(ref, rowvar=False)
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * SQRTM_EPS
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    diff = mu1 - mu2
    value = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(np.real(value))


def diversity(features, reference_features) -> float:
    """Mean Euclidean distance between all pairs of `features` (N, D), after normalising them by
    `reference_features`' statistics. ``diversity(gt, gt)`` is the ground truth's own diversity."""
    f, _ = normalise(features, reference_features)
    return float(pdist(f).mean())
