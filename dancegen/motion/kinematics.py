"""Forward kinematics in torch: batched over any leading dimensions and differentiable."""

from __future__ import annotations

from typing import Sequence

import torch


def forward_kinematics(
    local_rotations: torch.Tensor,
    root_translation: torch.Tensor,
    offsets: torch.Tensor,
    parents: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """World joint positions and orientations from local rotations.

    local_rotations: (..., J, 3, 3) rotation of each joint relative to its parent (joint 0: global).
    root_translation: (..., 3) world position of joint 0.
    offsets: (J, 3) or (..., J, 3) rest offsets from the parent; parents[j] < j, parents[0] = -1.
    Returns positions (..., J, 3) and world rotations (..., J, 3, 3).
    """
    offsets = offsets.to(local_rotations).expand(*local_rotations.shape[:-2], 3)
    world_rot: list[torch.Tensor] = []
    world_pos: list[torch.Tensor] = []
    for j, p in enumerate(parents):
        if p < 0:
            world_rot.append(local_rotations[..., j, :, :])
            world_pos.append(root_translation + offsets[..., j, :])
        else:
            world_rot.append(world_rot[p] @ local_rotations[..., j, :, :])
            world_pos.append(world_pos[p] + (world_rot[p] @ offsets[..., j, :, None])[..., 0])
    return torch.stack(world_pos, dim=-2), torch.stack(world_rot, dim=-3)
