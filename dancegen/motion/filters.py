"""Filters on motion: Gaussian smoothing along time, and grounding the feet on the floor."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .motion import Motion

FOOT_WORDS = ("ankle", "foot", "toe")


def gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(T, C) smoothed along time by a Gaussian of `sigma` frames: scipy's `gaussian_filter1d` with
    mode="nearest" (edges repeated, the kernel cut at 4 σ), in torch, which generation has loaded
    already (importing scipy.ndimage would add 0.3 s to a cold `dancegen generate`)."""
    radius = int(4.0 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype).expand(x.shape[1], 1, -1)
    padded = F.pad(x.T[None], (radius, radius), mode="replicate")
    return F.conv1d(padded, kernel, groups=x.shape[1])[0].T


def foot_joints(motion: Motion) -> list[int]:
    """Indices of the joints whose names say ankle, foot or toe (SMPL's lankle, rankle, ltoes, rtoes)."""
    feet = [i for i, n in enumerate(motion.skeleton.names) if any(w in n.lower() for w in FOOT_WORDS)]
    if not feet:
        raise ValueError(f"no joint of the skeleton is named like a foot ({', '.join(FOOT_WORDS)}): "
                         f"{', '.join(motion.skeleton.names)}")
    return feet


def grounded(motion: Motion, sigma: float, floor: float = 0.0) -> Motion:
    """`motion` moved up or down, frame by frame, so that its lowest foot joint rests on `floor`:
    the lowest foot's height, smoothed by a Gaussian of `sigma` seconds (0: none), is what is moved
    to the floor, so the feet neither float nor sink while lifts shorter than about `sigma` stay."""
    if len(motion) == 0:
        return motion
    lowest = torch.from_numpy(motion.positions()[:, foot_joints(motion), 1].min(1))[:, None]
    if sigma > 0:
        lowest = gaussian_smooth(lowest.double(), sigma * motion.fps)
    root = motion.root_translation.copy()
    root[:, 1] -= lowest[:, 0].numpy().astype(root.dtype) - floor
    return Motion(motion.fps, motion.skeleton, root, motion.rotations)
