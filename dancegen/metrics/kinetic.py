"""Kinetic features of a dance: the AIST++ API's / Bailando's ``extract_kinetic_features``.

Reproduces ``utils/features/kinetic.py`` + ``utils/features/utils.py`` of Bailando (identical to
``aist_plusplus/features/kinetic.py``, itself from fairmotion), vectorised over frames and joints.
"""

from __future__ import annotations

import numpy as np

from ._common import positions_y_up

SLIDING_WINDOW = 2


def _window_sum(values: np.ndarray, first: int, last: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """For each frame i = 1 .. T-1, the sum of ``values[k]`` over k in [i-window, i+window] ∩ [first, last]
    (added in increasing k, as the reference loop does) and the number of terms."""
    n = len(values)  # values is indexed by frame, values[k] defined for first <= k <= last
    frames = np.arange(1, n)
    total = np.zeros((n - 1,) + values.shape[1:])
    count = np.zeros(n - 1, dtype=np.int64)
    for offset in range(-window, window + 1):
        k = frames + offset
        valid = (k >= first) & (k <= last)
        total[valid] += values[k[valid]]
        count += valid
    return total, count


def kinetic_features(positions, fps: float = 60, up: str = "y") -> np.ndarray:
    """The 72 kinetic features (float32): for each of the 24 joints, in joint order,
    the mean horizontal kinetic energy, mean vertical kinetic energy and mean energy expenditure.

    For every frame i = 1 .. T-1 the velocity is the mean frame-to-frame displacement over a
    window of ±2 frames, divided by the frame time 1/fps; the energies are its squared horizontal
    and vertical norms, averaged over the T-1 frames. ``up`` names the input's up axis ("y" or
    "z"; a Z-up input is turned Y-up first, see ``positions_y_up``).

    Reference quirk, kept so that numbers compare with published ones: the reference's
    acceleration at frame k is ``(v2 - v1) / dt`` with ``v2 = (p[k+1] - p[k]) / dt`` but
    ``v1 = p[k] - p[k-1] / dt`` (only the second position divided by dt). The "energy
    expenditure" is the norm of that quantity averaged over the window, so it is not a true
    acceleration and it changes when the whole clip is translated (Bailando first subtracts
    the first frame's root position from every joint; do that before calling if you follow its
    protocol). Needs at least 3 frames.
    """
    p = positions_y_up(positions, up, min_frames=3)
    n = len(p)
    dt = 1.0 / fps

    disp = np.zeros_like(p)
    disp[1:] = p[1:] - p[:-1]  # disp[k] = p[k] - p[k-1], k >= 1
    disp_sum, v_count = _window_sum(disp, 1, n - 1, SLIDING_WINDOW)
    horizontal = disp_sum[..., [0, 2]] / (v_count * dt)[:, None, None]
    vertical = disp_sum[..., 1] / (v_count * dt)[:, None]
    kinetic_h = np.sum(np.linalg.norm(horizontal, axis=-1) ** 2, axis=0) / (n - 1.0)
    kinetic_v = np.sum(np.abs(vertical) ** 2, axis=0) / (n - 1.0)

    acc = np.zeros_like(p)
    v2 = (p[2:] - p[1:-1]) / dt
    v1 = p[1:-1] - p[:-2] / dt  # the reference's formula, see the docstring
    acc[1:-1] = (v2 - v1) / dt  # acc[k] defined for 1 <= k <= T-2
    acc_sum, a_count = _window_sum(acc, 1, n - 2, SLIDING_WINDOW)
    expenditure = np.sum(np.linalg.norm(acc_sum / a_count[:, None, None], axis=-1), axis=0) / (n - 1.0)

    return np.stack([kinetic_h, kinetic_v, expenditure], axis=-1).reshape(-1).astype(np.float32)
