"""Filters on motion: Gaussian smoothing along time, grounding the feet on the floor, and re-timing a
dance so that its kinematic beats fall on the music's beats."""

from __future__ import annotations

import numpy as np
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


def kinematic_beats(motion: Motion, fps: float = 60.0) -> np.ndarray:
    """Times (s) of `motion`'s kinematic beats: the local minima of its mean joint speed at `fps`,
    smoothed by a Gaussian of 5 frames, as Bailando's beat alignment score finds them
    (`dancegen.metrics.beats.motion_beats`; here without scipy, which `dancegen generate` does not load)."""
    p = motion.resample(fps).positions().astype(np.float64)
    if len(p) < 4:
        return np.zeros(0)
    speed = np.linalg.norm(np.diff(p, axis=0), axis=-1).mean(1)
    s = gaussian_smooth(torch.from_numpy(speed)[:, None].double(), 5.0)[:, 0].numpy()
    return (np.flatnonzero((s[1:-1] < s[:-2]) & (s[1:-1] < s[2:])) + 1) / fps


def on_beats(motion: Motion, beats: np.ndarray, *, max_shift: float = 0.3, max_stretch: float = 1.5) -> Motion:
    """`motion` re-timed so that its kinematic beats (`kinematic_beats`) fall on the music's `beats`
    (seconds): in time order, each kinematic beat within `max_shift` s of a music beat not taken yet is
    moved onto it, unless the motion between it and the previous moved beat would then play more than
    `max_stretch` times faster or slower; between moved beats time runs linearly. The first and the
    last frame stay where they are, and so does the length."""
    end = (motion.num_frames - 1) / motion.fps
    beats = np.sort(np.asarray(beats, dtype=np.float64))
    if end <= 0 or len(beats) == 0:
        return motion
    anchors, taken = [(0.0, 0.0)], set()  # (music time, motion time)
    for k in kinematic_beats(motion):
        i = int(np.argmin(np.abs(beats - k)))
        b = beats[i]
        b0, k0 = anchors[-1]
        if abs(b - k) > max_shift or i in taken or b <= b0 or k <= k0:
            continue
        if 1 / max_stretch <= (b - b0) / (k - k0) <= max_stretch:
            anchors.append((b, k))
            taken.add(i)
    while len(anchors) > 1 and not (anchors[-1][0] < end and anchors[-1][1] < end and
                                    1 / max_stretch <= (end - anchors[-1][0]) / (end - anchors[-1][1]) <= max_stretch):
        anchors.pop()  # the last stretch, to the unmoved last frame, must keep within the bounds too
    music_t, motion_t = np.array(anchors + [(end, end)]).T
    return motion.at_times(np.interp(np.arange(motion.num_frames) / motion.fps, music_t, motion_t))
