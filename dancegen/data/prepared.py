"""The prepared-dataset layout (Transflower's), read side.

```
DIR/dataset.json                       manifest: kind, fps, features and their dims, sequences
DIR/[sequence].[feature].npy           (T, D) float32 per modality, frame-aligned at the dataset fps
DIR/[sequence].motion.npz              the canonical Motion (skeleton included)
DIR/base_filenames_{train,val,test}.txt  sequence names per split, split by song
DIR/stats/[feature].npz                normalisation (mean, std) fitted on the train split only
```
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..motion import Motion

FORMAT = "dancegen-prepared"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


def manifest_path(root: Path) -> Path:
    return root / "dataset.json"


def split_path(root: Path, split: str) -> Path:
    return root / f"base_filenames_{split}.txt"


def feature_path(root: Path, name: str, feature: str) -> Path:
    return root / f"{name}.{feature}.npy"


def motion_path(root: Path, name: str) -> Path:
    return root / f"{name}.motion.npz"


def stats_path(root: Path, feature: str) -> Path:
    return root / "stats" / f"{feature}.npz"


@dataclass
class Normaliser:
    mean: np.ndarray
    std: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean


class PreparedDataset:
    """Read access to a prepared folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        path = manifest_path(self.root)
        if not path.is_file():
            raise UserError(self.root, "not a prepared dataset (no dataset.json; run `dancegen prepare`)")
        try:
            self.manifest = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(path, f"broken manifest ({e})") from None
        if self.manifest.get("format") != FORMAT:
            raise UserError(path, "not a dancegen prepared-dataset manifest")

    @property
    def fps(self) -> float:
        return float(self.manifest["fps"])

    @property
    def features(self) -> dict[str, int]:
        """feature name -> dimension."""
        return {k: v["dim"] for k, v in self.manifest["features"].items()}

    @property
    def sequences(self) -> dict[str, dict]:
        return self.manifest["sequences"]

    def features_of(self, modality: str) -> list[str]:
        """The features of one modality ("motion" or "music")."""
        return [f for f, v in self.manifest["features"].items() if v.get("modality") == modality]

    def split(self, split: str) -> list[str]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}")
        return split_path(self.root, split).read_text().split()

    def array(self, name: str, feature: str, mmap: bool = True) -> np.ndarray:
        if feature not in self.manifest["features"]:
            raise UserError(self.root, f"no feature {feature!r}; it has {', '.join(self.features)}")
        return np.load(feature_path(self.root, name, feature), mmap_mode="r" if mmap else None)

    def motion(self, name: str) -> Motion:
        return Motion.load(motion_path(self.root, name))

    def normaliser(self, feature: str) -> Normaliser:
        with np.load(stats_path(self.root, feature)) as z:
            return Normaliser(z["mean"].astype(np.float32), z["std"].astype(np.float32))
