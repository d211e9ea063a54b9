"""The diffusion family (dancegen/models/diffusion.py) on a tiny model, and a few steps on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from conftest import continuation_gap, fixed_loss, normalise_like, random_music as music, synthetic_motion, train_steps
from dancegen.data.representation import motion_to_rot6d
from dancegen.models import load_model
from dancegen.models.diffusion import DiffusionModel
from dancegen.motion import SMPL_JOINT_NAMES

TINY = dict(fps=25.0, music_features=["fact35"], music_dims=[35], window=30, overlap=6, patch=3, d_model=32,
            layers=1, heads=2, ff=64, diffusion_steps=100, sample_steps=4, chunk=4)


def tiny(**kw) -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(**{**TINY, **kw}).eval()


def synthetic_batch(model: DiffusionModel, n: int = 8) -> dict:
    rot6d = np.stack([motion_to_rot6d(synthetic_motion(i, model.window + 1)) for i in range(n)])
    rng = np.random.default_rng(0)
    return {"inputs": {"fact35": torch.from_numpy(rng.normal(size=(n, model.window, 35)).astype(np.float32))},
            "outputs": {"rot6d": torch.from_numpy(rot6d)}, "style": ["waltz", "rumba"] * (n // 2)}


def test_loss_falls_on_a_tiny_batch():
    model = tiny()
    batch = synthetic_batch(model)
    before = fixed_loss(model, batch)
    train_steps(model, batch, 15, 5e-3)
    after = fixed_loss(model, batch)
    assert after < 0.5 * before, (before, after)


def test_generate_length_fps_skeleton_and_long_form():
    model = tiny()
    for frames in (30, 77, 200):  # one window; not a multiple of the window's stride; many windows
        motion = model.generate(music(frames), length=frames, seed=0)
        assert motion.num_frames == frames and motion.fps == 25.0
        assert motion.skeleton.names == SMPL_JOINT_NAMES
        assert np.isfinite(motion.rotations).all() and np.isfinite(motion.root_translation).all()
    at_30 = model.generate(music(90, fps=30.0), length=90, seed=0)  # music at another frame rate
    assert at_30.num_frames == 90 and at_30.fps == 30.0


def test_seed_decides_the_dance():
    model = tiny()
    a, b, c = (model.generate(music(77), seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.rotations, b.rotations) and np.array_equal(a.root_translation, b.root_translation)
    assert not np.allclose(a.rotations, c.rotations)


def test_save_load_round_trip(tmp_path: Path):
    model = tiny()
    train_steps(model, synthetic_batch(model), 2, 1e-3)  # weights away from their initial values
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, DiffusionModel) and loaded.config == model.config
    a, b = model.generate(music(77), seed=3), loaded.generate(music(77), seed=3)
    assert np.array_equal(a.rotations, b.rotations) and np.array_equal(a.root_translation, b.root_translation)
    assert not list(tmp_path.glob("m/*.tmp*"))


def test_sampler_recovers_the_clean_motion_from_a_perfect_denoiser():
    """Forward and reverse agree: a denoiser that knows x0 leads DDIM, window stitching included, to x0."""
    model = tiny()
    frames = 77
    x0 = torch.randn(frames, model.motion_dim)
    stride = model.window - model.overlap
    n = int(np.ceil((frames - model.overlap) / stride))
    padded = torch.cat([x0, torch.zeros(model.overlap + n * stride - frames, model.motion_dim)])
    windows = padded.unfold(0, model.window, stride).transpose(1, 2)  # (n, window, D)
    model.chunk = n  # one chunk per step, so the oracle knows which windows it is given
    model.net.forward = lambda x, t, tokens, styles: windows
    out = model.sample(torch.zeros(frames, 35), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-5)


def test_inpainted_frames_equal_the_given_frames():
    model = tiny()
    known = torch.randn(10, model.motion_dim)
    mask = torch.zeros_like(known, dtype=torch.bool)
    mask[:, 3:] = True  # every rotation of the first 10 frames; the root is free
    out = model.sample(torch.zeros(77, 35), generator=torch.Generator().manual_seed(0), known=known, mask=mask)
    assert torch.equal(out[:10][mask], known[mask]) and not torch.equal(out[:10, :3], known[:, :3])


def test_seed_motion_is_continued():
    model = tiny()
    model.motion_std[1:3] = 0.01  # root steps of about a centimetre, as in real data
    _, gap = continuation_gap(model, synthetic_motion(0, 40))
    assert gap < 0.5  # starts where the seed ends, not at the origin


def test_a_few_steps_on_real_windows_lower_the_loss(real_dance):
    rot6d, fact35, style = real_dance
    frames = len(rot6d)
    model = DiffusionModel(**{**TINY, "d_model": 64, "ff": 128, "layers": 2})
    normalise_like(model, rot6d, fact35)
    starts = range(0, frames - model.window - 1, 60)
    batch = {"inputs": {"fact35": torch.from_numpy(np.stack([fact35[s + 1:s + 1 + model.window] for s in starts]))},
             "outputs": {"rot6d": torch.from_numpy(np.stack([rot6d[s:s + model.window + 1] for s in starts]))},
             "style": [style] * len(starts)}
    before = fixed_loss(model, batch)
    train_steps(model, batch, 25, 3e-3)
    assert fixed_loss(model, batch) < 0.7 * before
