"""`Motion`: the one motion type that flows through dancegen.

A motion is a frame rate, a `Skeleton`, the root's world translation (T, 3) and each joint's
rotation relative to its parent as a rotation vector (T, J, 3); metres, seconds, Y up.
Joint positions come from forward kinematics.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..io import atomic_path
from .kinematics import forward_kinematics
from .rotations import axis_angle_to_matrix
from .skeleton import Skeleton


CHUNK = 4096  # frames that `positions` and `at_times` work on at a time


@dataclass(eq=False)
class Motion:
    fps: float
    skeleton: Skeleton
    root_translation: np.ndarray  # (T, 3) world position of the root joint, metres
    rotations: np.ndarray  # (T, J, 3) local joint rotations as rotation vectors; joint 0 is global

    def __post_init__(self):
        self.fps = float(self.fps)
        self.root_translation = np.asarray(self.root_translation, dtype=np.float32)
        self.rotations = np.asarray(self.rotations, dtype=np.float32)
        t, j = len(self.root_translation), self.skeleton.num_joints
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.root_translation.shape != (t, 3) or self.rotations.shape != (t, j, 3):
            raise ValueError(
                f"motion shapes disagree: root_translation {self.root_translation.shape}, "
                f"rotations {self.rotations.shape}, skeleton of {j} joints"
            )

    @property
    def num_frames(self) -> int:
        return len(self.root_translation)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, frames: slice) -> "Motion":
        """Frames `frames` (a slice) as a new Motion."""
        if not isinstance(frames, slice):
            raise TypeError("index a Motion with a slice of frames")
        return Motion(self.fps, self.skeleton, self.root_translation[frames], self.rotations[frames])

    def positions(self) -> np.ndarray:
        """World joint positions (T, J, 3), metres, by forward kinematics (CHUNK frames at a time, so
        that a long dance needs no more working memory than a short one)."""
        out = np.empty((self.num_frames, self.skeleton.num_joints, 3), dtype=np.float32)
        with torch.no_grad():
            for s in range(0, self.num_frames, CHUNK):
                pos, _ = forward_kinematics(
                    axis_angle_to_matrix(torch.from_numpy(self.rotations[s:s + CHUNK])),
                    torch.from_numpy(self.root_translation[s:s + CHUNK]),
                    torch.from_numpy(self.skeleton.offsets),
                    self.skeleton.parents,
                )
                out[s:s + CHUNK] = pos.numpy()
        return out

    def resample(self, fps: float) -> "Motion":
        """The motion at another frame rate: rotations by slerp, root translation linearly.

        Frames are taken at k / fps for every k that falls within the original's time span.
        """
        if fps == self.fps:
            return self
        end = (self.num_frames - 1) / self.fps
        return self.at_times(np.arange(int(np.floor(end * fps + 1e-6)) + 1) / fps, fps)

    def at_times(self, times: np.ndarray, fps: float | None = None) -> "Motion":
        """The motion sampled at `times` (seconds, clipped to its span; any order) as frames at `fps`
        (by default its own): rotations by slerp between the two frames around each time, the root
        translation linearly. In torch, without roma or scipy (`dancegen generate` loads neither)."""
        from .rotations import quaternion_to_axis_angle

        times = np.clip(np.asarray(times, dtype=np.float64) * self.fps, 0, self.num_frames - 1)
        lo = np.minimum(np.floor(times).astype(np.int64), max(self.num_frames - 2, 0))
        hi = np.minimum(lo + 1, self.num_frames - 1)
        w = (times - lo)[:, None]
        root = (1 - w) * self.root_translation[lo] + w * self.root_translation[hi]
        rotations = np.empty((len(times), self.skeleton.num_joints, 3), dtype=np.float32)
        with torch.no_grad():
            r = torch.from_numpy(self.rotations).double()
            angle = r.norm(dim=-1, keepdim=True)
            q = torch.cat([r * torch.sinc(angle / (2 * torch.pi)) / 2, torch.cos(angle / 2)], -1)  # x, y, z, w
            for s in range(0, len(times), CHUNK):  # CHUNK frames at a time: flat memory in the length
                q0, q1 = q[lo[s:s + CHUNK]], q[hi[s:s + CHUNK]]
                dot = (q0 * q1).sum(-1, keepdim=True)
                q1 = torch.where(dot < 0, -q1, q1)  # the shorter arc
                angle = torch.acos(dot.abs().clamp(max=1.0))
                t = torch.from_numpy(w[s:s + CHUNK])[:, None]
                near = angle < 1e-6
                sin = torch.where(near, torch.ones_like(angle), torch.sin(angle))
                a = torch.where(near, 1 - t, torch.sin((1 - t) * angle) / sin)
                b = torch.where(near, t, torch.sin(t * angle) / sin)
                qs = a * q0 + b * q1
                rotations[s:s + CHUNK] = quaternion_to_axis_angle(qs / qs.norm(dim=-1, keepdim=True)).numpy()
        return Motion(self.fps if fps is None else fps, self.skeleton, root, rotations)

    def save(self, path: str | os.PathLike) -> None:
        """Write a self-describing .npz (no pickled objects), atomically."""
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(
                tmp,
                fps=np.float64(self.fps),
                joint_names=np.array(self.skeleton.names),
                parents=np.array(self.skeleton.parents, dtype=np.int64),
                offsets=self.skeleton.offsets,
                root_translation=self.root_translation,
                rotations=self.rotations,
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Motion":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                skeleton = Skeleton(tuple(str(n) for n in z["joint_names"]), tuple(z["parents"]), z["offsets"])
                motion = cls(float(z["fps"]), skeleton, z["root_translation"], z["rotations"])
        except (OSError, KeyError, ValueError, TypeError, IndexError, EOFError, zipfile.BadZipFile,
                NotImplementedError) as e:  # a damaged or odd zip: numpy and zipfile raise all of these
            raise UserError(path, f"not a dancegen motion file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        if not (np.isfinite(motion.rotations).all() and np.isfinite(motion.root_translation).all()):
            raise UserError(path, "motion holds NaN or infinite values")
        return motion
