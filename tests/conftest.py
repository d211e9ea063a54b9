"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dancegen.datasets import Dataset, Sequence, register
from dancegen.errors import UserError
from dancegen.motion import Motion, smpl_skeleton

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; tests that need it skip when it is absent (a user's machine)."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (it exists only beside dev/CI checkouts)")
    return SHARED_DATA


FPS = 30
STYLES = ["waltz", "waltz", "waltz", "waltz", "rumba", "rumba", "tango"]


def synthetic_motion(seed: int, frames: int) -> Motion:
    rng = np.random.default_rng(seed)
    rot = 0.3 * np.sin(np.linspace(0, 6, frames)[:, None, None] + rng.uniform(0, 6, (1, 24, 3)))
    trans = np.cumsum(rng.normal(0, 0.01, (frames, 3)), 0) + [0, 0.9, 0]
    return Motion(FPS, smpl_skeleton(), trans, rot)


def _open_synthetic(root: Path) -> Dataset:
    names = sorted(p.stem for p in root.glob("*.npz"))
    styles = {n: STYLES[int(n[3:])] for n in names}

    def load(name: str) -> Sequence:
        if (root / f"{name}.broken").exists():
            raise UserError(root / f"{name}.npz", "broken on purpose")
        return Sequence(name, Motion.load(root / f"{name}.npz"), root / f"{name}.wav", 0.5, styles[name])

    return Dataset("synthetic", root, names, load, styles,
                   sources=lambda n: [root / f"{n}.npz", root / f"{n}.wav"])


register("synthetic", detect=lambda root: any(root.glob("seq*.npz")))(_open_synthetic)


@pytest.fixture()
def synthetic(tmp_path: Path) -> Path:
    """A small dataset of kind "synthetic": 7 SMPL motions at 30 fps with click-track songs, 4 styles."""
    root = tmp_path / "src"
    root.mkdir()
    sr = 22050
    for i, _ in enumerate(STYLES):
        frames = 90 + 10 * i
        synthetic_motion(i, frames).save(root / f"seq{i}.npz")
        t = np.arange(int((frames / FPS + 1.0) * sr)) / sr
        clicks = (np.sin(2 * np.pi * 440 * t) * (np.mod(t, 0.5) < 0.05)).astype(np.float32)
        sf.write(root / f"seq{i}.wav", clicks * 0.5, sr)
    return root
