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


@pytest.fixture(scope="session")
def real_dance(shared_data: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The first 40 s of Dance with Melody's DANCE_C_2 at 25 fps: rot6d (1000, 147), fact35 (1000, 35), style."""
    from dancegen.audio import features_many
    from dancegen.data.representation import motion_to_rot6d
    from dancegen.datasets import open_dataset

    seq = open_dataset("dance-with-melody", shared_data / "dance_with_melody").load("DANCE_C_2")
    frames = 25 * 40
    fact35 = features_many(seq.song, ["fact35"], seq.motion.fps, start=seq.offset, num_frames=frames)["fact35"]
    return motion_to_rot6d(seq.motion)[:frames], fact35, seq.style


def normalise_like(model, rot6d: np.ndarray, music: np.ndarray) -> None:
    """Set a trainable model's normalisation from one dance, as `for_data` does from a train split."""
    import torch

    motion = type(model).training_features(torch.from_numpy(rot6d))
    model.motion_mean.copy_(motion.mean(0))
    model.motion_std.copy_(motion.std(0).clamp(min=model.min_motion_std))
    model.music_mean.copy_(torch.from_numpy(music.mean(0)))
    model.music_std.copy_(torch.from_numpy(music.std(0)).clamp(min=1e-4))


@pytest.fixture
def one_torch_thread():
    """Tiny models on one torch thread (`dancegen.models.base.one_thread`): a second thread only waits,
    and on a busy machine much longer. Test modules use it with `pytestmark`."""
    from dancegen.models.base import one_thread

    with one_thread():
        yield


def continuation_gap(model, seed_motion: Motion, frames: int = 60) -> tuple[Motion, float]:
    """A dance of `frames` frames continuing `seed_motion` (its length checked), and the horizontal
    distance in metres from the seed's last root position to the dance's first."""
    motion = model.generate(random_music(frames), seed_motion=seed_motion, seed=0)
    assert motion.num_frames == frames
    return motion, float(np.linalg.norm(motion.root_translation[0, [0, 2]] - seed_motion.root_translation[-1, [0, 2]]))


def random_music(frames: int, fps: float = 25.0, seed: int = 0):
    """`Music` of random fact35 features, style waltz: for model tests that need no real song."""
    from dancegen.models import Music

    rng = np.random.default_rng(seed)
    return Music({"fact35": rng.normal(size=(frames, 35)).astype(np.float32)}, fps, style="waltz")


def fixed_loss(model, batch: dict) -> float:
    """A model's loss on `batch` in eval mode with fixed noise (four draws), for before/after comparisons."""
    import torch

    model.eval()
    with torch.no_grad():
        return sum(model.loss(batch, generator=torch.Generator().manual_seed(i))[0].item() for i in range(4))


def train_steps(model, batch: dict, steps: int, lr: float) -> None:
    """`steps` Adam steps on `batch` over the parameters that train."""
    import torch

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for i in range(steps):
        loss, _ = model.loss(batch, generator=torch.Generator().manual_seed(100 + i))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


FPS = 30
STYLES = ["waltz", "waltz", "waltz", "waltz", "rumba", "rumba", "tango"]


def window_batch(model, n: int = 8) -> dict:
    """A training batch of `n` synthetic dances and random fact35 music in the model's own windows
    (`model.windows()`), half waltz, half rumba."""
    import torch

    from dancegen.data.representation import motion_to_rot6d

    inputs, _ = model.windows()
    frames = inputs["fact35"][0]
    rot6d = np.stack([motion_to_rot6d(synthetic_motion(i, frames + 1)) for i in range(n)])
    rng = np.random.default_rng(0)
    return {"inputs": {"fact35": torch.from_numpy(rng.normal(size=(n, frames, 35)).astype(np.float32))},
            "outputs": {"rot6d": torch.from_numpy(rot6d)}, "style": ["waltz", "rumba"] * (n // 2)}


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
