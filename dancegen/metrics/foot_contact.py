"""Physical foot contact (PFC) score: EDGE's ``eval/eval_pfc.py`` (``calc_physical_score``) for one clip.

Lower is better: a clip scores high when the root accelerates while both feet slide.
"""

from __future__ import annotations

import numpy as np

from ._common import positions_y_up

EDGE_FPS = 30  # EDGE scores 30 fps clips; its foot speeds are per frame
FEET = (7, 10, 8, 11)  # left ankle, left foot, right ankle, right foot
UP = 1  # index of the up axis once positions are Y-up


def _to_fps(p: np.ndarray, fps: float, target: float) -> np.ndarray:
    """`p` resampled to `target` fps: every k-th frame when fps = k·target, else linear interpolation."""
    ratio = fps / target
    if abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1:
        return p[:: int(round(ratio))]
    times = np.arange(0.0, (len(p) - 1) / fps + 1e-9, 1.0 / target)
    frames = times * fps
    lo = np.minimum(np.floor(frames).astype(int), len(p) - 1)
    hi = np.minimum(lo + 1, len(p) - 1)
    w = (frames - lo)[:, None, None]
    return (1 - w) * p[lo] + w * p[hi]


def physical_foot_contact(positions, fps: float = 30, up: str = "y") -> float:
    """EDGE's PFC of one clip (T, 24, 3), ×10⁴ as EDGE reports it.

    Per frame: the root acceleration, its upward component clamped at 0 (only upward pushes need
    support), as a norm scaled by the clip's maximum; times the smaller horizontal per-frame speed
    of the left ankle/foot and of the right ankle/foot. The score is the mean over frames × 10⁴.

    EDGE works on Z-up 30 fps clips. Here ``up`` names the input's up axis ("y" or "z"); the up
    component and the horizontal speeds are the same whichever way the clip is turned, so a Y-up
    clip scores what EDGE gives for it turned Z-up. Clips at another ``fps`` are first brought to
    30 fps (every k-th frame when fps is a multiple of 30, as in taking every second frame of a
    60 fps clip; linear interpolation otherwise), because the foot speeds are per frame.
    Where EDGE divides 0 by 0 (a clip whose root never accelerates) this returns 0.0.
    """
    p = positions_y_up(positions, up, min_frames=3)
    if fps != EDGE_FPS:
        p = _to_fps(p, fps, EDGE_FPS)
        if len(p) < 3:
            raise ValueError(f"clip too short: {len(p)} frames at {EDGE_FPS} fps, PFC needs 3")
    dt = 1.0 / EDGE_FPS
    root_v = (p[1:, 0] - p[:-1, 0]) / dt
    root_a = (root_v[1:] - root_v[:-1]) / dt
    root_a[:, UP] = np.maximum(root_a[:, UP], 0)
    root_a = np.linalg.norm(root_a, axis=-1)
    scale = root_a.max()
    if scale > 0:
        root_a = root_a / scale

    horizontal = [i for i in range(3) if i != UP]
    feet = p[:, FEET][..., horizontal]
    foot_v = np.linalg.norm(feet[2:] - feet[1:-1], axis=-1)  # (T-2, 4)
    left = np.minimum(foot_v[:, 0], foot_v[:, 1])
    right = np.minimum(foot_v[:, 2], foot_v[:, 3])
    return float(np.mean(left * right * root_a) * 10000)
