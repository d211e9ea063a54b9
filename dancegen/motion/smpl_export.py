"""SMPL parameters in the AIST++ motion-pickle layout: `write_smpl(motion, path)`.

The pickle is a dict of plain numpy arrays, as AIST++ publishes its motions, so that SMPL tools
(the AIST++ API, EDGE's and Bailando's renderers, smplx-based viewers) can put a body on the dance:

- ``smpl_poses`` (T, 72) float32: each joint's local axis-angle, SMPL's 24 joints in order;
- ``smpl_trans`` (T, 3) float32: the root translation times the scale;
- ``smpl_scaling`` (1,) float32: 100, so that the translation reads in centimetres as AIST++'s does
  (its scales are near 100 too);

at 60 fps, AIST++'s rate (the layout has no frame-rate field): a motion at another rate is
resampled (`Motion.resample`: slerp, so the original frames are kept exactly where 60 is a
multiple of its rate). It is the inverse of `dancegen.datasets.aist.load_motion`, which reads
the root joint at ``smpl_trans / smpl_scaling``: a written file loads back to the same joint
positions. Like AIST++ data in that loader (and in EDGE), an SMPL layer puts the pelvis a
constant rest offset (about 0.22 m) below that point; see the loader's docstring.

SMPL has no per-joint offsets in this layout, so only motions on the SMPL 24-joint skeleton can
be written; their bone lengths become SMPL's neutral body's (the ones dancegen's models use). A
motion on longer or shorter legs (the default model dances each style on its training dancers'
body: the Latin dancers' legs are up to 13 cm longer) has its root translation scaled by the
ratio of SMPL's leg to its own (hip, knee and ankle offsets), so that the neutral body's feet meet
the floor where the dancer's did instead of floating above it, and its strides keep their length
in legs.
The pickle names numpy's array constructor as numpy 1.x does, so that both numpy 1.x and 2.x read
it. The file is written atomically.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from ..errors import UserError
from ..io import atomic_path
from .motion import Motion
from .skeleton import SMPL_JOINT_NAMES, SMPL_OFFSETS, SMPL_PARENTS

SMPL_FPS = 60.0  # AIST++'s frame rate (dancegen.datasets.aist.AIST_FPS)
SMPL_SCALING = 100.0  # translation in centimetres


def leg_length(offsets: np.ndarray) -> float:
    """Rest length of SMPL's legs on a skeleton's `offsets`: hip, knee and ankle offsets, both sides averaged."""
    joints = [SMPL_JOINT_NAMES.index(n) for n in ("lhip", "lknee", "lankle", "rhip", "rknee", "rankle")]
    return float(np.linalg.norm(np.asarray(offsets, dtype=np.float64)[joints], axis=1).sum() / 2)


def smpl_parameters(motion: Motion) -> dict[str, np.ndarray]:
    """The AIST++ dict of `motion` at 60 fps; ValueError when its skeleton is not SMPL's 24 joints
    or it has no frames."""
    skeleton = motion.skeleton
    if skeleton.names != SMPL_JOINT_NAMES or skeleton.parents != SMPL_PARENTS:
        raise ValueError(f"SMPL parameters need the SMPL 24-joint skeleton; this motion's skeleton has "
                         f"{skeleton.num_joints} joints ({', '.join(skeleton.names[:4])}, ...)")
    if motion.num_frames == 0:
        raise ValueError("the motion has no frames to write")
    if motion.num_frames > 1:
        motion = motion.resample(SMPL_FPS)
    root = motion.root_translation.astype(np.float64) + skeleton.offsets[0]  # SMPL's root offset is zero
    root *= leg_length(SMPL_OFFSETS) / leg_length(skeleton.offsets)  # on SMPL's legs (1 for its own body)
    return {
        "smpl_poses": motion.rotations.reshape(motion.num_frames, -1).astype(np.float32),
        "smpl_trans": (root * SMPL_SCALING).astype(np.float32),
        "smpl_scaling": np.array([SMPL_SCALING], dtype=np.float32),
    }


def write_smpl(motion: Motion, path: str | os.PathLike) -> None:
    """Write `motion` as an AIST++ SMPL pickle, atomically; UserError when it is not an SMPL motion."""
    try:
        params = smpl_parameters(motion)
    except ValueError as e:
        raise UserError(path, str(e)) from None
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        _Numpy1Pickler(f, protocol=2).dump(params)


class _Numpy1Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pickles arrays as numpy 1.x does, through ``numpy.core.multiarray._reconstruct``: numpy 2
    names ``numpy._core``, which numpy 1.x (still common among SMPL tools) cannot import, while
    numpy 2 still reads the old name."""

    _RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]

    def save_global(self, obj, name=None):
        if obj is self._RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)
