"""In-betweening metrics and windows as in the LaFAN1 benchmark (Harvey et al., "Robust Motion
In-betweening", SIGGRAPH 2020), for any `Motion`.

Protocol: windows slide through each held-out sequence every `STRIDE` (40) frames; each gives
`CONTEXT` (10) context frames, a gap of N frames (5, 15, 30) to fill and 1 target frame after it.
Only the gap frames are scored. Every window is first put in the frame of its last context frame:
turned about the vertical so that the root faces +Z there and moved so that the root stands over
the origin there (LaFAN1's `rotate_at_frame`). Then:

- L2P: global joint positions (forward kinematics), each coordinate normalised by the mean and std
  of that coordinate over the training split's windows (`position_stats`, the same windows and
  frame), the L2 norm over all joints' coordinates per frame, averaged over frames and windows.
- L2Q: global joint rotations as unit quaternions (x, y, z, w), made continuous along each window
  (a quaternion is negated when its dot product with the previous frame's is negative, starting from
  the first context frame), the L2 norm over all joints' quaternions per frame, averaged.
- NPSS (Gopalakrishnan et al., CVPR 2019): per quaternion component, the power spectrum over the
  gap's frames (squared real part of the DFT, as LaFAN1's benchmark) normalised to sum to one; the
  earth mover's distance between the cumulative spectra of prediction and truth (the L1 norm of their
  difference); averaged over components and windows weighted by the truth's total power.

Written by hand from those definitions (numpy and torch); LaFAN1's own code is not a maintained
library. The Dance with Melody data are at 25 fps, not LaFAN1's 30: a gap of N frames is N / 25 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

from ..motion import Motion, forward_kinematics
from ..motion.rotations import axis_angle_to_matrix, matrix_to_quaternion

CONTEXT, GAPS, STRIDE = 10, (5, 15, 30), 40


def global_pose(motion: Motion) -> tuple[np.ndarray, np.ndarray]:
    """World joint positions (T, J, 3) and rotation matrices (T, J, 3, 3) of a motion."""
    with torch.no_grad():
        pos, rot = forward_kinematics(axis_angle_to_matrix(torch.from_numpy(motion.rotations).double()),
                                      torch.from_numpy(motion.root_translation).double(),
                                      torch.from_numpy(motion.skeleton.offsets).double(), motion.skeleton.parents)
    return pos.numpy(), rot.numpy()


def in_frame_of(positions: np.ndarray, rotations: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (T, J, 3) and world rotations (T, J, 3, 3) turned about +Y so that the root faces +Z at
    `frame` (its local +Z projected on the floor) and moved so that the root is over the origin there."""
    forward = rotations[frame, 0, :, 2]
    yaw = np.arctan2(forward[0], forward[2])
    c, s = np.cos(-yaw), np.sin(-yaw)
    turn = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    origin = positions[frame, 0] * [1, 0, 1]
    return (positions - origin) @ turn.T, turn @ rotations


def continuous_quaternions(rotations: np.ndarray) -> np.ndarray:
    """(T, J, 3, 3) rotations -> (T, J, 4) unit quaternions (x, y, z, w), each joint's made continuous
    along time (negated where the dot product with the previous frame's is negative)."""
    q = matrix_to_quaternion(torch.from_numpy(np.ascontiguousarray(rotations))).numpy()
    flips = np.concatenate([np.ones((1, q.shape[1])), np.sign(np.sum(q[1:] * q[:-1], -1) + 1e-12)])
    return q * np.cumprod(flips, axis=0)[..., None]


def l2p(pred: np.ndarray, true: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """(N, T, J, 3) positions, normalised by `mean`/`std` (J, 3): the mean over windows and frames of the
    L2 norm over all coordinates."""
    diff = ((pred - mean) / std - (true - mean) / std).reshape(*pred.shape[:2], -1)
    return float(np.linalg.norm(diff, axis=-1).mean())


def l2q(pred: np.ndarray, true: np.ndarray) -> float:
    """(N, T, J, 4) quaternions: the mean over windows and frames of the L2 norm over all components."""
    return float(np.linalg.norm((pred - true).reshape(*pred.shape[:2], -1), axis=-1).mean())


def npss(pred: np.ndarray, true: np.ndarray) -> float:
    """Normalised power spectrum similarity of (N, T, D) sequences (lower is better; 0 when equal)."""
    def spectrum(x):
        power = np.real(np.fft.fft(x, axis=1)) ** 2
        total = power.sum(axis=1)
        return power / np.maximum(total, 1e-12)[:, None], total

    p, _ = spectrum(pred)
    t, total = spectrum(true)
    emd = np.abs(np.cumsum(p, axis=1) - np.cumsum(t, axis=1)).sum(axis=1)  # (N, D)
    return float(np.average(emd, weights=total)) if total.sum() > 0 else float(emd.mean())


def window_starts(num_frames: int, span: int = CONTEXT + max(GAPS) + 1, stride: int = STRIDE) -> list[int]:
    return list(range(0, num_frames - span + 1, stride))


def scored_window(motion: Motion, start: int, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (gap, J, 3) and continuous quaternions (gap, J, 4) of the gap frames of the window at
    `start` of `motion` (its first CONTEXT + gap + 1 frames used), in the frame of the last context frame."""
    window = motion[start:start + CONTEXT + gap + 1]
    pos, rot = in_frame_of(*global_pose(window), CONTEXT - 1)
    quats = continuous_quaternions(rot)
    return pos[CONTEXT:CONTEXT + gap], quats[CONTEXT:CONTEXT + gap]


def position_stats(motions: Iterable[Motion]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (J, 3) of the positions of every frame of every benchmark window of `motions` (the
    training split), in each window's frame: L2P's normalisation."""
    span = CONTEXT + max(GAPS) + 1
    frames = []
    for motion in motions:
        for start in window_starts(motion.num_frames):
            pos, rot = global_pose(motion[start:start + span])
            frames.append(in_frame_of(pos, rot, CONTEXT - 1)[0])
    x = np.concatenate(frames)
    return x.mean(0), np.maximum(x.std(0), 1e-6)


@dataclass
class Scores:
    l2p: float
    l2q: float
    npss: float
    windows: int


Filler = Callable[[Motion, np.ndarray, str, int], Motion]  # (window motion, key frames, sequence name, start) -> filled


def evaluate_inbetweening(sequences: dict[str, Motion], methods: dict[str, Filler], stats: tuple[np.ndarray, np.ndarray],
                          gaps: tuple[int, ...] = GAPS, progress: bool = False) -> dict[str, dict[int, Scores]]:
    """{method: {gap: Scores}} over every window of every sequence. A method gets the window (the
    context, the gap and the target: CONTEXT + gap + 1 frames), the indices of its known frames (the
    context and the target) and must return a Motion of the same frames; only the gap is scored."""
    from tqdm import tqdm

    results: dict[str, dict[int, Scores]] = {m: {} for m in methods}
    jobs = [(name, start) for name, motion in sequences.items() for start in window_starts(motion.num_frames)]
    for gap in gaps:
        keys = np.append(np.arange(CONTEXT), CONTEXT + gap)
        true = [scored_window(sequences[n], s, gap) for n, s in jobs]
        true_pos, true_q = np.stack([t[0] for t in true]), np.stack([t[1] for t in true])
        for method, fill in methods.items():
            preds = []
            for n, s in tqdm(jobs, desc=f"{method}, gap {gap}", disable=not progress, leave=False):
                window = sequences[n][s:s + CONTEXT + gap + 1]
                filled = fill(window, keys, n, s)
                preds.append(scored_window(filled, 0, gap))
            pos, q = np.stack([p[0] for p in preds]), np.stack([p[1] for p in preds])
            results[method][gap] = Scores(l2p(pos, true_pos, *stats), l2q(q, true_q),
                                          npss(q.reshape(*q.shape[:2], -1), true_q.reshape(*true_q.shape[:2], -1)),
                                          len(jobs))
    return results


def table(results: dict[str, dict[int, Scores]]) -> str:
    """A markdown table: one row per method, L2P, L2Q and NPSS at each gap."""
    gaps = sorted(next(iter(results.values())))
    head = "| method | " + " | ".join(f"{m} @{g}" for m in ("L2P", "L2Q", "NPSS") for g in gaps) + " |"
    rows = [head, "|---|" + "---|" * (3 * len(gaps))]
    for method, by_gap in results.items():
        cells = [f"{by_gap[g].l2p:.3f}" for g in gaps] + [f"{by_gap[g].l2q:.3f}" for g in gaps] \
            + [f"{by_gap[g].npss:.4f}" for g in gaps]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
