"""Geometric ("manual") features of a dance: the AIST++ API's / Bailando's ``extract_manual_features``.

Reproduces Bailando's ``utils/features/manual_new.py`` + ``utils/features/utils.py`` (the AIST++
API's ``aist_plusplus/features/manual.py``; after Müller et al.'s relational features), vectorised
over frames: 32 boolean relations between joints per frame, averaged over frames 1 .. T-1.
"""

from __future__ import annotations

import numpy as np

from ._common import positions_y_up

JOINTS = {
    name: i
    for i, name in enumerate(
        "root lhip rhip belly lknee rknee spine lankle rankle chest ltoes rtoes neck linshoulder "
        "rinshoulder head lshoulder rshoulder lelbow relbow lwrist rwrist lhand rhand".split()
    )
}

# The reference's body measures, in metres, from a fixed SMPL rest pose (not the dancer's).
_LSHOULDER = np.array([1.99113488e-01, 2.36807942e-01, -1.80702247e-02])
_RSHOULDER = np.array([-1.91692337e-01, 2.36928746e-01, -1.23055102e-02])
_LELBOW = np.array([4.54445392e-01, 2.21158922e-01, -4.10167128e-02])
_LHIP = np.array([5.64076714e-02, -3.23069185e-01, 1.09197125e-02])
_RHIP = np.array([-6.24834076e-02, -3.31302464e-01, 1.50412619e-02])
HL = float(np.linalg.norm(_LSHOULDER - _LELBOW))  # humerus length
SW = float(np.linalg.norm(_LSHOULDER - _RSHOULDER))  # shoulder width
HW = float(np.linalg.norm(_LHIP - _RHIP))  # hip width

# The reference divides frame-to-frame displacements by 1/120 s whatever the clip's frame rate.
TIME_PER_FRAME = 1 / 120.0


def _dot(a, b):
    return np.sum(a * b, axis=-1)


def _norm(a):
    return np.linalg.norm(a, axis=-1)


class _Frames:
    """Joint positions of the current frames (1 .. T-1) and of the frames before them."""

    def __init__(self, p: np.ndarray):
        self.cur, self.prev = p[1:], p[:-1]
        n = len(self.cur)
        y_min = np.zeros((n, 3))
        y_min[:, 1] = self.cur[:, :, 1].min(axis=1)
        self.special = {
            "zero": np.zeros((n, 3)),
            "y_unit": np.tile([0.0, 1.0, 0.0], (n, 1)),
            "minus_y_unit": np.tile([0.0, -1.0, 0.0], (n, 1)),
            "y_min": y_min,
        }

    def __call__(self, name: str, prev: bool = False) -> np.ndarray:
        if name in self.special:
            return self.special[name]
        return (self.prev if prev else self.cur)[:, JOINTS[name]]

    # The relations below keep the reference's argument conventions.
    def move(self, j1, j2, j3, _j4, threshold):
        """Speed of j3 relative to j1 along the direction j1 -> j2 is above threshold (j4 unused)."""
        velocity = (self(j3) - self(j1)) - (self(j3, True) - self(j1, True))
        direction = self(j2) - self(j1)
        return _dot(velocity, direction) / _norm(direction) / TIME_PER_FRAME > threshold

    def nmove(self, j1, j2, j3, j4, threshold):
        """Speed of j4 relative to j1 along the normal of the plane (j1, j2, j3) is above threshold."""
        velocity = (self(j4) - self(j1)) - (self(j4, True) - self(j1, True))
        direction = np.cross(self(j3) - self(j1), self(j2) - self(j1))
        return _dot(velocity, direction) / _norm(direction) / TIME_PER_FRAME > threshold

    def plane(self, j1, j2, j3, j4, threshold):
        """Signed distance of j4 from the plane through j1, j2, j3 is above threshold."""
        normal = np.cross(self(j3) - self(j1), self(j2) - self(j1))
        return _dot(normal, self(j4) - self(j1)) / _norm(normal) > threshold

    def nplane(self, j1, j2, j3, j4, threshold):
        """Signed distance of j4 from the plane through j3 with normal j1 -> j2 is above threshold."""
        normal = self(j2) - self(j1)
        return _dot(normal, self(j4) - self(j3)) / _norm(normal) > threshold

    def angle(self, j1, j2, j3, j4, bounds):
        """The angle between j1 -> j2 and j3 -> j4 lies strictly inside bounds (degrees)."""
        a, b = self(j2) - self(j1), self(j4) - self(j3)
        degrees = np.degrees(np.arccos(_dot(a, b) / (_norm(a) * _norm(b))))
        return (degrees > bounds[0]) & (degrees < bounds[1])

    def fast(self, j1, threshold):
        """Speed of j1 is above threshold."""
        return _norm(self(j1) - self(j1, True)) / TIME_PER_FRAME > threshold


def geometric_features(positions, fps: float = 60, up: str = "y") -> np.ndarray:
    """The 32 geometric features (float32): the share of frames 1 .. T-1 in which each boolean
    relation of the AIST++ API's manual features holds (hands raised, feet apart, knees bent, fast
    wrists, ...), with the reference's thresholds in units of its fixed humerus length, shoulder
    width and hip width.

    Reference quirk, kept: the velocity relations divide each frame-to-frame displacement by a
    hard-coded 1/120 s, whatever the frame rate. ``fps`` is therefore not used; it is accepted so
    that every metric takes the same arguments. ``up`` names the input's up axis ("y" or "z"; the
    relations use "height" along Y, so a Z-up input is turned Y-up first, see ``positions_y_up``).
    """
    f = _Frames(positions_y_up(positions, up, min_frames=2))
    # A degenerate direction (zero length) gives NaN, which compares False, as in the reference.
    with np.errstate(invalid="ignore", divide="ignore"):
        features = _relations(f, HL, SW, HW)
    return np.stack(features, axis=1).astype(np.float32).mean(axis=0)


def _relations(f: _Frames, hl: float, sw: float, hw: float) -> list[np.ndarray]:
    """The 32 relations, in the reference's order, each a (T-1,) boolean array."""
    return [
        f.nmove("neck", "rhip", "lhip", "rwrist", 1.8 * hl),
        f.nmove("neck", "lhip", "rhip", "lwrist", 1.8 * hl),
        f.nplane("chest", "neck", "neck", "rwrist", 0.2 * hl),
        f.nplane("chest", "neck", "neck", "lwrist", 0.2 * hl),
        f.move("belly", "chest", "chest", "rwrist", 1.8 * hl),
        f.move("belly", "chest", "chest", "lwrist", 1.8 * hl),
        f.angle("relbow", "rshoulder", "relbow", "rwrist", (0, 110)),
        f.angle("lelbow", "lshoulder", "lelbow", "lwrist", (0, 110)),
        f.nplane("lshoulder", "rshoulder", "lwrist", "rwrist", 2.5 * sw),
        f.move("lwrist", "rwrist", "rwrist", "lwrist", 1.4 * hl),
        f.move("rwrist", "root", "lwrist", "root", 1.4 * hl),
        f.move("lwrist", "root", "rwrist", "root", 1.4 * hl),
        f.fast("rwrist", 2.5 * hl),
        f.fast("lwrist", 2.5 * hl),
        f.plane("root", "lhip", "ltoes", "rankle", 0.38 * hl),
        f.plane("root", "rhip", "rtoes", "lankle", 0.38 * hl),
        f.nplane("zero", "y_unit", "y_min", "rankle", 1.2 * hl),
        f.nplane("zero", "y_unit", "y_min", "lankle", 1.2 * hl),
        f.nplane("lhip", "rhip", "lankle", "rankle", 2.1 * hw),
        f.angle("rknee", "rhip", "rknee", "rankle", (0, 110)),
        f.angle("lknee", "lhip", "lknee", "lankle", (0, 110)),
        f.fast("rankle", 2.5 * hl),
        f.fast("lankle", 2.5 * hl),
        f.angle("neck", "root", "rshoulder", "relbow", (25, 180)),
        f.angle("neck", "root", "lshoulder", "lelbow", (25, 180)),
        f.angle("neck", "root", "rhip", "rknee", (50, 180)),
        f.angle("neck", "root", "lhip", "lknee", (50, 180)),
        f.plane("rankle", "neck", "lankle", "root", 0.5 * hl),
        f.angle("neck", "root", "zero", "y_unit", (70, 110)),
        f.nplane("zero", "minus_y_unit", "y_min", "rwrist", -1.2 * hl),
        f.nplane("zero", "minus_y_unit", "y_min", "lwrist", -1.2 * hl),
        f.fast("root", 2.3 * hl),
    ]
