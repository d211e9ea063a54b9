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


def mirror_rot6d(rot6d: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """(..., 3 + 6J) rot6d frames of the dance mirrored left-to-right (x -> -x): each joint's local
    rotation R becomes M R M with M = diag(-1, 1, 1), and left and right joints (SMPL's names: "lhip"
    and "rhip") swap. For a skeleton with mirror-symmetric rest offsets, the joint positions are
    exactly the mirrored ones. A training augmentation: it doubles the dances."""
    names = list(skeleton.names)
    twin = {"l": "r", "r": "l"}
    order = [names.index(twin[n[0]] + n[1:]) if n[:1] in twin and twin[n[0]] + n[1:] in names else i
             for i, n in enumerate(names)]
    flip = torch.tensor([-1.0, 1.0, 1.0], dtype=rot6d.dtype, device=rot6d.device)
    root = rot6d[..., :3] * flip
    mats = sixd_to_matrix(rot6d[..., 3:].unflatten(-1, (len(names), 6)))[..., order, :, :]
    mats = mats * flip[:, None] * flip[None, :]
    return torch.cat([root, matrix_to_6d(mats).flatten(-2)], dim=-1)
