"""Input checks and the up-axis convention shared by the metric functions."""

from __future__ import annotations

import numpy as np

N_JOINTS = 24  # SMPL joints in AIST++ order


def positions_y_up(positions, up: str = "y", min_frames: int = 2) -> np.ndarray:
    """Return `positions` as float64 (T, 24, 3), Y up.

    ``up="y"`` leaves the array as it is; ``up="z"`` turns a Z-up array into Y-up by the
    rotation of -90 degrees about X, (x, y, z) -> (x, z, -y). It only permutes and negates
    components, so it is exact: a Y-up clip turned Z-up by (x, y, z) -> (x, -z, y) and back gives
    bit-identical metrics. A flat (T, 72) array is accepted and reshaped.
    """
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == N_JOINTS * 3:
        p = p.reshape(len(p), N_JOINTS, 3)
    if p.ndim != 3 or p.shape[1:] != (N_JOINTS, 3):
        raise ValueError(f"positions must be (T, {N_JOINTS}, 3) joint positions, got shape {p.shape}")
    if len(p) < min_frames:
        raise ValueError(f"positions need at least {min_frames} frames, got {len(p)}")
    if up == "y":
        return p
    if up == "z":
        return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)
    raise ValueError(f'up must be "y" or "z", got {up!r}')
