"""Beat alignment between music and motion, in the two published variants.

- ``"bailando"``: Bailando's ``utils/beat_align_score.py`` (``calc_db`` and ``BA``), the "BAS"
  reported by Bailando, EDGE and most later papers.
- ``"fact"``: the FACT / AIST++ beat score (``motion_peak_onehot`` and ``alignment_score``), as in
  POPDG's ``eval/calculate_beat_scores.py``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.signal import argrelextrema

from ._common import positions_y_up

SIGMA = 3.0  # frames, both variants
BAILANDO_SMOOTHING = 5  # frames, Gaussian sigma on the mean joint speed
FACT_ORDER = 10  # frames each side of a FACT motion beat ("10 for 60 fps")


def motion_beats(positions, variant: str = "bailando", up: str = "y") -> np.ndarray:
    """Motion beat indices (local minima of joint speed) as each variant finds them.

    ``"bailando"``: minima of the mean over joints of the frame-to-frame displacement norm, smoothed
    by a Gaussian of sigma 5; index i is the step from frame i to i+1 (indices < T-1).
    ``"fact"``: minima over ±10 frames of the sum over joints of the displacement norm (float32, the
    first frame's speed set to 0 as in the reference); index i is frame i.
    """
    p = positions_y_up(positions, up, min_frames=2)
    if variant == "bailando":
        speed = np.mean(np.sqrt(np.sum((p[1:] - p[:-1]) ** 2, axis=2)), axis=1)
        return argrelextrema(gaussian_filter(speed, BAILANDO_SMOOTHING), np.less)[0]
    if variant == "fact":
        velocity = np.zeros(p.shape, dtype=np.float32)
        velocity[1:] = p[1:] - p[:-1]
        envelope = np.sum(np.linalg.norm(velocity, axis=2), axis=1)
        return argrelextrema(envelope, np.less, order=FACT_ORDER)[0]
    raise ValueError(f'variant must be "bailando" or "fact", got {variant!r}')


def _nearest_distance(beats: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each of `beats`, the distance in frames to the nearest of `others`."""
    return np.min(np.abs(beats[:, None] - others[None, :]), axis=1).astype(np.float64)


def beat_align_score(positions, music_beats, fps: float = 60, variant: str = "bailando", up: str = "y") -> float:
    """Beat alignment score in [0, 1] between a dance (T, 24, 3) and music beat frame indices.

    ``"bailando"``: the mean over the music beats inside the motion (index < T-1) of
    exp(-d² / (2·3²)), d the distance to the nearest motion beat. ``"fact"``: the mean over the
    motion beats of the same kernel, d the distance to the nearest music beat (all given beats).

    Both references work in frames (sigma 3 frames at 60 fps) and ignore ``fps``; it is accepted so
    that every metric takes the same arguments, and callers should pass 60 fps motion and beats to
    compare with published numbers. Where the references fail or return 0, this returns 0.0 when the
    motion has no beats (the Bailando code would raise; FACT returns 0) and NaN when there is no
    music beat to score against.
    """
    beats = motion_beats(positions, variant, up)
    music = np.unique(np.asarray(music_beats, dtype=np.int64).reshape(-1))
    if variant == "bailando":
        music = music[(music >= 0) & (music < len(positions) - 1)]
        if len(music) == 0:
            return float("nan")
        if len(beats) == 0:
            return 0.0
        d = _nearest_distance(music, beats)
    else:
        if len(beats) == 0:
            return 0.0
        if len(music) == 0:
            return float("nan")
        d = _nearest_distance(beats, music)
    return float(np.mean(np.exp(-(d**2) / (2 * SIGMA**2))))
