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
        """World joint positions (T, J, 3), metres, by forward kinematics."""
        with torch.no_grad():
            pos, _ = forward_kinematics(
                axis_angle_to_matrix(torch.from_numpy(self.rotations)),
                torch.from_numpy(self.root_translation),
                torch.from_numpy(self.skeleton.offsets),
                self.skeleton.parents,
            )
        return pos.numpy()

    def resample(self, fps: float) -> "Motion":
        """The motion at another frame rate: rotations by slerp, root translation linearly.

        Frames are taken at k / fps for every k that falls within the original's time span.
        """
        from scipy.spatial.transform import Rotation, Slerp

        if fps == self.fps:
            return self
        t = np.arange(self.num_frames) / self.fps
        new_t = np.arange(int(np.floor(t[-1] * fps + 1e-6)) + 1) / fps
        root = np.stack([np.interp(new_t, t, self.root_translation[:, i]) for i in range(3)], axis=1)
        rotations = np.stack([Slerp(t, Rotation.from_rotvec(self.rotations[:, j]))(new_t).as_rotvec()
                              for j in range(self.skeleton.num_joints)], axis=1)
        return Motion(fps, self.skeleton, root, rotations)

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
