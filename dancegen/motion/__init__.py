"""Motion and Skeleton, forward kinematics, rotation helpers and BVH."""

from .bvh import read_bvh, write_bvh
from .kinematics import forward_kinematics
from .motion import Motion
from .skeleton import SMPL_JOINT_NAMES, SMPL_OFFSETS, SMPL_PARENTS, Skeleton, smpl_skeleton

__all__ = [
    "Motion", "Skeleton", "smpl_skeleton", "forward_kinematics",
    "SMPL_JOINT_NAMES", "SMPL_PARENTS", "SMPL_OFFSETS", "read_bvh", "write_bvh",
]
