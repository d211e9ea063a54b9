"""Rotation conversions, all delegated to roma (a maintained PyTorch rotation library).

Conventions: axis-angle is a rotation vector (..., 3); quaternions are unit (x, y, z, w) as in
roma and glTF; matrices act on column vectors; the 6-D representation (Zhou et al. 2019) is the
first two columns of the matrix, flattened as (..., 6) = [c0x, c1x, c0y, c1y, c0z, c1z];
Euler angles follow roma's convention strings ("XYZ" intrinsic, "xyz" extrinsic).
"""

from __future__ import annotations

import roma
import torch


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    return roma.rotvec_to_rotmat(axis_angle)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    return roma.rotmat_to_rotvec(matrix)


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    return roma.rotvec_to_unitquat(axis_angle)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    return roma.unitquat_to_rotvec(quaternion)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    return roma.unitquat_to_rotmat(quaternion)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    return roma.rotmat_to_unitquat(matrix)


def matrix_to_6d(matrix: torch.Tensor) -> torch.Tensor:
    return matrix[..., :, :2].flatten(-2)


def sixd_to_matrix(sixd: torch.Tensor) -> torch.Tensor:
    """Nearest rotation to an arbitrary 6-D vector, by Gram-Schmidt (roma.special_gramschmidt)."""
    return roma.special_gramschmidt(sixd.unflatten(-1, (3, 2)))


def euler_to_matrix(angles: torch.Tensor, convention: str = "ZXY", degrees: bool = True) -> torch.Tensor:
    """Euler angles (..., 3) to matrices; BVH channel order "Zrotation Xrotation Yrotation" is "ZXY"."""
    return roma.euler_to_rotmat(convention, angles, degrees=degrees)


def matrix_to_euler(matrix: torch.Tensor, convention: str = "ZXY", degrees: bool = True) -> torch.Tensor:
    return roma.rotmat_to_euler(convention, matrix, degrees=degrees)
