"""Motion as a frame-by-frame feature vector for training, and back.

`rot6d`: root translation (3) then each joint's local rotation in the 6-D representation
(J × 6), so 147 values for the SMPL skeleton (EDGE's representation without foot contacts).
The skeleton is not in the vector: it lives beside it (the prepared dataset keeps each
sequence's canonical Motion in `[sequence].motion.npz`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..motion import Motion, Skeleton
from ..motion.rotations import axis_angle_to_matrix, matrix_to_6d, matrix_to_axis_angle, sixd_to_matrix

MOTION_REPRESENTATION = "rot6d"


def representation_dim(skeleton: Skeleton) -> int:
    return 3 + 6 * skeleton.num_joints


def motion_to_rot6d(motion: Motion) -> np.ndarray:
    """(T, 3 + 6J) float32."""
    mats = axis_angle_to_matrix(torch.from_numpy(motion.rotations))
    sixd = matrix_to_6d(mats).reshape(motion.num_frames, -1)
    return np.concatenate([motion.root_translation, sixd.numpy()], axis=1).astype(np.float32)


def rot6d_to_motion(features: np.ndarray | torch.Tensor, skeleton: Skeleton, fps: float) -> Motion:
    """Inverse of `motion_to_rot6d`; arbitrary 6-D vectors are projected to the nearest rotation."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    t = x.shape[0]
    mats = sixd_to_matrix(x[:, 3:].reshape(t, skeleton.num_joints, 6))
    return Motion(fps, skeleton, x[:, :3].numpy(), matrix_to_axis_angle(mats).numpy())
