"""Joint rotations from joint positions: fit a skeleton to position data and solve its rotations.

Given target world positions for (some of) a skeleton's joints, `solve_rotations` finds local
joint rotations whose forward kinematics reproduces them, with the skeleton's constant bone
lengths. It works joint by joint from the root down, each step vectorised over all frames:

- a joint with several children (SMPL's pelvis, chest) takes the rotation that best maps its rest
  child offsets onto the observed ones (weighted Kabsch, as `roma.rigid_vectors_registration`);
- a joint with one child turns its rest bone direction onto the observed direction exactly; the
  twist about the bone comes from a *hint*, a world vector that should point where the joint's
  `rest_hint` points at rest (a knee's bending direction, the line between the ears, ...), blended
  with the least-twist rotation relative to the parent (the swing alone) so that a vanishing
  hint (a straight knee) falls back smoothly instead of spinning;
- a joint whose children have no target (a leaf, a wrist without hand data) keeps its parent's
  orientation (identity local rotation).

Each child's direction is measured from its parent's *reconstructed* position, so errors do not
accumulate down a chain. Rotation vectors come from quaternions kept in one hemisphere over time,
so they do not flip between frames (`continuous_rotvec`). Written by hand because no maintained library solves a
position-to-rotation fit for an arbitrary tree with twist references; conversions are scipy's
`Rotation` (faster than roma's on CPU for these frame counts).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from .skeleton import Skeleton

_EPS = 1e-9


def bone_lengths_from_positions(positions: np.ndarray, parents: Sequence[int]) -> np.ndarray:
    """Median over frames of each joint's distance to its parent (J,); NaN where either is unknown.

    positions: (T, J, 3), NaN for joints without data.
    """
    lengths = np.full(len(parents), np.nan)
    for j, p in enumerate(parents):
        if p >= 0:
            d = np.linalg.norm(positions[:, j] - positions[:, p], axis=-1)
            if np.isfinite(d).any():
                lengths[j] = np.nanmedian(d)
    lengths[0] = 0.0
    return lengths


def skeleton_with_lengths(template: Skeleton, lengths: np.ndarray) -> Skeleton:
    """`template`'s names, parents and rest directions, with bone lengths `lengths` (NaN: keep)."""
    offsets = template.offsets.astype(np.float64).copy()
    norms = np.linalg.norm(offsets, axis=-1)
    for j, length in enumerate(lengths):
        if j > 0 and np.isfinite(length) and norms[j] > 0:
            offsets[j] *= length / norms[j]
    return template.with_offsets(offsets)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def _frame(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal frames (..., 3, 3) whose columns are primary, secondary made orthogonal, their cross."""
    x = _normalize(primary)
    y = _normalize(secondary - (secondary * x).sum(-1, keepdims=True) * x)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def _shortest_arc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) turning unit vectors a onto unit vectors b by the shortest arc."""
    a, b = np.broadcast_arrays(a, b)
    axis = np.cross(a, b)
    w = 1.0 + (a * b).sum(-1, keepdims=True)
    # Opposite vectors: any axis perpendicular to a (the half-turn is then well defined).
    opposite = w[..., 0] < 1e-6
    if opposite.any():
        perp = np.cross(a[opposite], np.array([1.0, 0.0, 0.0]))
        small = np.linalg.norm(perp, axis=-1) < 1e-3
        perp[small] = np.cross(a[opposite][small], np.array([0.0, 1.0, 0.0]))
        axis[opposite], w[opposite] = perp, 0.0
    quat = np.concatenate([axis, w], axis=-1)  # (x, y, z, w), scipy's and roma's convention
    return Rotation.from_quat(quat.reshape(-1, 4)).as_matrix().reshape(*quat.shape[:-1], 3, 3)


def _kabsch(rest: np.ndarray, observed: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) with observed ≈ R @ rest in the weighted least-squares sense.

    rest (K, 3), observed (T, K, 3). The SVD solution of the orthogonal Procrustes problem (as
    roma.rigid_vectors_registration), in numpy because it is several times faster here on CPU.
    """
    cov = np.einsum("k,ki,tkj->tij", weights, rest, observed)
    u, _, vt = np.linalg.svd(cov)
    v, ut = np.swapaxes(vt, -1, -2), np.swapaxes(u, -1, -2)
    d = np.sign(np.linalg.det(v @ ut))
    v = v * np.stack([np.ones_like(d), np.ones_like(d), d], axis=-1)[:, None, :]
    return v @ ut


def continuous_rotvec(local_rotmats: np.ndarray, switch_angle: float = 1.5 * np.pi) -> np.ndarray:
    """Rotation vectors (T, J, 3) from matrices (T, J, 3, 3) that do not flip between frames.

    A rotation vector of angle a about n and one of angle a - 2*pi about n are the same rotation;
    the shortest one (angle <= pi) flips to the other side whenever a rotation passes a half turn
    (a dancer turning to face backwards). Here each joint's quaternion keeps its hemisphere from
    frame to frame, so the vector stays continuous through the half turn, and switches to the
    short representation only when its angle exceeds `switch_angle` (a jump of 2*pi that cannot
    be avoided by any rotation-vector track of a dancer who keeps turning). The hysteresis keeps
    such switches rare: a rotation that lingers near a half turn never toggles.
    """
    shape = local_rotmats.shape[:-2]
    quat = Rotation.from_matrix(local_rotmats.reshape(-1, 3, 3)).as_quat().reshape(*shape, 4)
    quat = quat * np.where(quat[..., 3:] < 0, -1.0, 1.0)  # each frame's shortest representation
    # sign[t, j] = +1 keeps that frame's short quaternion, -1 takes the long one.
    same = (quat[1:] * quat[:-1]).sum(-1) >= 0  # (T-1, J): neighbours in one hemisphere
    cos_half_switch = np.cos(switch_angle / 2)
    sign = np.ones(shape)
    for j in range(shape[1]):
        # Follow continuity (flip when neighbours' short quaternions are in opposite hemispheres) and
        # restart from the short representation when the angle passes switch_angle.
        t = 0
        while t < shape[0] - 1:
            track = np.cumprod(np.where(same[t:, j], 1.0, -1.0)) * sign[t, j]
            w = track * quat[t + 1:, j, 3]  # w of the followed quaternion, frames t+1...
            past = np.flatnonzero(w < cos_half_switch)
            end = shape[0] - 1 if past.size == 0 else t + past[0]
            sign[t + 1:end + 1, j] = track[: end - t]
            if past.size == 0:
                break
            sign[end + 1, j] = 1.0
            t = end + 1
    quat = quat * sign[..., None]
    # The rotation vector of a quaternion of either sign (roma.unitquat_to_rotvec(shortest_arc=False)).
    xyz, w = quat[..., :3], quat[..., 3]
    sin_half = np.linalg.norm(xyz, axis=-1)
    angle = 2.0 * np.arctan2(sin_half, w)
    scale = np.where(sin_half > 1e-7, angle / np.maximum(sin_half, 1e-12), 2.0 / np.where(w == 0, 1.0, w))
    return xyz * scale[..., None]


def solve_rotations(
    targets: np.ndarray,
    skeleton: Skeleton,
    hints: Mapping[int, np.ndarray] | None = None,
    rest_hints: Mapping[int, np.ndarray] | None = None,
    *,
    twist_fallback: float | np.ndarray = 0.02,
    child_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local rotations whose forward kinematics on `skeleton` reproduces `targets`.

    targets: (T, J, 3) world positions; a joint with any NaN has no data and is placed by its parent
        alone (the root must have data).
    hints: joint -> (T, 3) world vector fixing the twist of that joint's single bone; its length is
        its confidence, compared with `twist_fallback` (same units as positions; one value or one
        per joint), the weight of the least-twist rotation it is blended with.
    rest_hints: joint -> (3,) where that hint points in the rest pose.
    child_weights: (J,) weights of each child in the Kabsch fit of joints with several children.
    Returns root_translation (T, 3), local rotation matrices (T, J, 3, 3) (joint 0 global) and the
    reconstructed world positions (T, J, 3).
    """
    hints, rest_hints = hints or {}, rest_hints or {}
    targets = np.asarray(targets, dtype=np.float64)
    n_frames, n_joints = targets.shape[:2]
    parents = skeleton.parents
    offsets = skeleton.offsets.astype(np.float64)
    known = np.isfinite(targets).all(axis=(0, 2))
    if not known[0]:
        raise ValueError("the root joint needs a target in every frame")
    children = [[c for c in range(n_joints) if parents[c] == j and known[c]] for j in range(n_joints)]
    weights = np.ones(n_joints) if child_weights is None else np.asarray(child_weights, dtype=np.float64)
    fallback_weight = np.broadcast_to(np.asarray(twist_fallback, dtype=np.float64), (n_joints,))

    world_rot = np.zeros((n_frames, n_joints, 3, 3))
    positions = np.zeros((n_frames, n_joints, 3))
    eye = np.broadcast_to(np.eye(3), (n_frames, 3, 3))
    for j in range(n_joints):
        p = parents[j]
        if p < 0:
            positions[:, j] = targets[:, j]
            parent_rot = eye
        else:
            parent_rot = world_rot[:, p]
            positions[:, j] = positions[:, p] + parent_rot @ offsets[j]
        kids = children[j]
        if not kids:
            world_rot[:, j] = parent_rot  # nothing observed below this joint: no local rotation
        elif len(kids) > 1:
            rest = offsets[kids]
            observed = targets[:, kids] - positions[:, j, None]
            world_rot[:, j] = _kabsch(rest, observed, weights[kids])
        else:
            c = kids[0]
            rest_dir = _normalize(offsets[c])
            observed_dir = _normalize(targets[:, c] - positions[:, j])
            # Least twist: the parent's orientation followed by the swing onto the observed direction.
            swing = _shortest_arc(rest_dir, np.einsum("tji,tj->ti", parent_rot, observed_dir))
            least_twist = parent_rot @ swing
            if j not in hints:
                world_rot[:, j] = least_twist
                continue
            rest_hint = np.asarray(rest_hints[j], dtype=np.float64)
            fallback = least_twist @ _normalize(rest_hint - (rest_hint @ rest_dir) * rest_dir)
            secondary = np.asarray(hints[j], dtype=np.float64) + fallback_weight[j] * fallback
            world_rot[:, j] = _frame(observed_dir, secondary) @ _frame(rest_dir, rest_hint).T

    local = world_rot.copy()
    for j, p in enumerate(parents):
        if p >= 0:
            local[:, j] = np.swapaxes(world_rot[:, p], -1, -2) @ world_rot[:, j]
    return targets[:, 0] - offsets[0], local, positions
