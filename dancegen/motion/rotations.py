"""Rotation conversions, from roma (a maintained PyTorch rotation library).

Conventions: axis-angle is a rotation vector (..., 3); quaternions are unit (x, y, z, w) as in
roma and glTF; matrices act on column vectors; the 6-D representation (Zhou et al. 2019) is the
first two columns of the matrix, flattened as (..., 6) = [c0x, c1x, c0y, c1y, c0z, c1z];
Euler angles follow roma's convention strings ("XYZ" intrinsic, "xyz" extrinsic).

Importing roma imports torch._dynamo (1.4 s on a quiet 2-core machine, a seventh of the
`dancegen generate` budget), so roma is imported only when one of its functions is called, and the
four conversions that generating and writing a dance use are written here with roma's operations
in roma's order: axis-angle to matrix (Rodrigues), matrix to axis-angle (Markley's quaternion,
then atan2), the 6-D Gram-Schmidt and matrix to Euler angles (scipy's quaternion algorithm, as
roma has it). tests/test_motion.py checks that they give exactly roma's results, bit for bit.
"""

from __future__ import annotations

import math

import torch


def _roma():
    import roma

    return roma


def _sinc_threshold(x: torch.Tensor) -> float:
    return 2.0 * torch.finfo(x.dtype).eps ** (1 / 6)  # roma's: below it, a Taylor expansion


def axis_angle_to_matrix(axis_angle: torch.Tensor, epsilon: float = 1e-6) -> torch.Tensor:
    """Rodrigues' formula; to first order below `epsilon` radians (roma.rotvec_to_rotmat)."""
    batch = axis_angle.shape[:-1]
    v = axis_angle.reshape(-1, 3)
    theta = torch.norm(v, dim=-1)
    axis = v / torch.clamp_min(theta[..., None], epsilon)
    kx, ky, kz = axis[:, 0], axis[:, 1], axis[:, 2]
    sin, cos = torch.sin(theta), torch.cos(theta)
    c = 1 - cos
    xs, ys, zs = kx * sin, ky * sin, kz * sin
    xyc, xzc, yzc = kx * ky * c, kx * kz * c, ky * kz * c
    xxc, yyc, zzc = kx**2 * c, ky**2 * c, kz**2 * c
    rodrigues = torch.stack([1 - yyc - zzc, xyc - zs, xzc + ys,
                             xyc + zs, 1 - xxc - zzc, -xs + yzc,
                             xzc - ys, xs + yzc, 1 - xxc - yyc], dim=-1).reshape(-1, 3, 3)
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    one = torch.ones_like(x)
    first_order = torch.stack([one, -z, y, z, one, -x, -y, x, one], dim=-1).reshape(-1, 3, 3)
    return torch.where((theta < epsilon)[:, None, None], first_order, rodrigues).reshape(*batch, 3, 3)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Markley's variant of Shepperd's method: all four candidates, the best-conditioned one
    normalised (roma.rotmat_to_unitquat)."""
    (a11, a12, a13), (a21, a22, a23), (a31, a32, a33) = (row.unbind(-1) for row in matrix.transpose(-1, -2).unbind(-2))
    x = torch.stack([1 + a11 - a22 - a33, a12 + a21, a13 + a31, a23 - a32,
                     a21 + a12, 1 + a22 - a33 - a11, a23 + a32, a31 - a13,
                     a31 + a13, a32 + a23, 1 + a33 - a11 - a22, a12 - a21,
                     a23 - a32, a31 - a13, a12 - a21, 1 + a11 + a22 + a33], dim=-1).unflatten(-1, (4, 4))
    i = x.diagonal(dim1=-2, dim2=-1).argmax(dim=-1)
    best = torch.gather(x, -2, i[..., None, None].expand(*i.shape, 1, 4))[..., 0, :]
    return best / torch.norm(best, dim=-1, keepdim=True)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """The shortest arc (angle at most pi) of a unit quaternion (roma.unitquat_to_rotvec)."""
    batch = quaternion.shape[:-1]
    q = quaternion.reshape(-1, 4).clone()
    q = q * ((q[:, 3] > 0).to(q.dtype) * 2.0 - 1.0)[:, None]  # w >= 0
    half = torch.atan2(torch.norm(q[:, :3], dim=1), q[:, 3])
    small = torch.abs(half) < _sinc_threshold(half)
    inv_sinc = torch.where(small, 1 + half**2 / 6 + 7 * half**4 / 360,
                           half / torch.where(small, torch.ones_like(half), torch.sin(half)))
    return ((2.0 * inv_sinc)[:, None] * q[:, :3]).reshape(*batch, 3)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    return _roma().rotvec_to_unitquat(axis_angle)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    return _roma().unitquat_to_rotmat(quaternion)


def matrix_to_6d(matrix: torch.Tensor) -> torch.Tensor:
    return matrix[..., :, :2].flatten(-2)


def sixd_to_matrix(sixd: torch.Tensor) -> torch.Tensor:
    """Nearest rotation to an arbitrary 6-D vector, by Gram-Schmidt (roma.special_gramschmidt)."""
    m = sixd.unflatten(-1, (3, 2))
    batch = m.shape[:-2]
    m = m.reshape(-1, 3, 2)
    x, y = m[:, :, 0], m[:, :, 1]
    x = x / torch.clamp_min(torch.norm(x, dim=-1, keepdim=True), 0)
    y = y - torch.sum(x * y, dim=-1, keepdim=True) * x
    y = y / torch.clamp_min(torch.norm(y, dim=-1, keepdim=True), 0)
    return torch.stack((x, y, torch.cross(x, y, dim=-1)), dim=-1).reshape(*batch, 3, 3)


def euler_to_matrix(angles: torch.Tensor, convention: str = "ZXY", degrees: bool = True) -> torch.Tensor:
    """Euler angles (..., 3) to matrices; BVH channel order "Zrotation Xrotation Yrotation" is "ZXY"."""
    return _roma().euler_to_rotmat(convention, angles, degrees=degrees)


def matrix_to_euler(matrix: torch.Tensor, convention: str = "ZXY", degrees: bool = True,
                    epsilon: float = 1e-7) -> torch.Tensor:
    """Matrices to Euler angles (..., 3) by way of the quaternion, as scipy and roma.rotmat_to_euler do;
    at gimbal lock the third angle is 0."""
    if len(convention) != 3 or not set(convention.lower()) <= set("xyz"):
        raise ValueError(f"an Euler convention is three of x, y, z (or X, Y, Z), got {convention!r}")
    extrinsic = convention.islower()
    axes = convention if extrinsic else convention.lower()[::-1]
    i, j, k = ("xyz".index(a) for a in axes)
    if i == j or j == k:
        raise ValueError(f"consecutive Euler axes must differ, got {convention!r}")
    symmetric = i == k
    if symmetric:
        k = 3 - i - j
    sign = (i - j) * (j - k) * (k - i) // 2  # +1 for an even permutation, -1 for an odd one
    batch = matrix.shape[:-2]
    q = matrix_to_quaternion(matrix).reshape(-1, 4)
    if symmetric:
        a, b, c, d = q[:, 3], q[:, i], q[:, j], q[:, k] * sign
    else:
        a, b, c, d = q[:, 3] - q[:, j], q[:, i] + q[:, k] * sign, q[:, j] + q[:, 3], q[:, k] * sign - q[:, i]
    first, third = (0, 2) if extrinsic else (2, 0)
    angles = [torch.empty(len(q), device=q.device, dtype=q.dtype) for _ in range(3)]
    angles[1] = 2 * torch.atan2(torch.hypot(c, d), torch.hypot(a, b))
    case1 = torch.abs(angles[1]) <= epsilon
    case2 = torch.abs(angles[1] - math.pi) <= epsilon
    half_sum, half_diff = torch.atan2(b, a), torch.atan2(d, c)
    angles[first] = half_sum - half_diff
    angles[third] = half_sum + half_diff
    angles[2][torch.logical_or(case1, case2)] = 0
    angles[0][case1] = 2 * half_sum[case1]
    angles[0][case2] = 2 * (-1 if extrinsic else 1) * half_diff[case2]
    if not symmetric:
        angles[third] *= sign
        angles[1] -= math.pi / 2
    for n, angle in enumerate(angles):
        angle[angle < -math.pi] += 2 * math.pi
        angle[angle > math.pi] -= 2 * math.pi
        angles[n] = (torch.rad2deg(angle) if degrees else angle).reshape(batch)
    return torch.stack(angles, dim=-1)
