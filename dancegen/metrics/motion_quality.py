"""Motion-quality measures of the benchmark that have no single published reference code.

- `foot_skating`: mean horizontal speed (m/s) of the feet (ankles and toes) over the frames in
  which they touch the floor, a foot joint touching when it is within 5 cm of the clip's floor
  (the 2nd percentile of its foot joints' heights). Sliding planted feet score high; a real
  dancer's pivots and slides give a baseline, so compare with the ground-truth row.
- `window_speeds`: mean joint speed (m/s) of consecutive windows, for the freeze rate (the
  share of 2-s windows slower than a tenth of the ground truth's median).
"""

from __future__ import annotations

import numpy as np

from ._common import positions_y_up

FOOT_JOINTS = (7, 8, 10, 11)  # lankle, rankle, ltoes, rtoes
CONTACT_HEIGHT = 0.05  # metres above the clip's floor


def foot_skating(positions, fps: float, up: str = "y") -> float:
    p = positions_y_up(positions, up, min_frames=2)
    feet = p[:, FOOT_JOINTS]
    height = feet[..., 1]
    floor = np.percentile(height, 2)
    contact = (height[1:] < floor + CONTACT_HEIGHT) & (height[:-1] < floor + CONTACT_HEIGHT)
    speed = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=0), axis=-1) * fps
    return float(speed[contact].mean()) if contact.any() else 0.0


def window_speeds(positions, fps: float, seconds: float = 2.0, up: str = "y") -> np.ndarray:
    """Mean joint speed (m/s) in each whole window of `seconds` (the remainder is dropped)."""
    p = positions_y_up(positions, up, min_frames=2)
    speed = np.linalg.norm(np.diff(p, axis=0), axis=-1).mean(axis=1) * fps  # (T-1,)
    n = int(round(seconds * fps))
    whole = len(speed) // n
    return speed[: whole * n].reshape(whole, n).mean(axis=1) if whole else np.zeros(0)
