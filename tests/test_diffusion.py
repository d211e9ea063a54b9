"""The diffusion family (dancegen/models/diffusion.py) on a tiny model, and a few steps on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (continuation_gap, fixed_loss, normalise_like, random_music as music, synthetic_motion,
                      train_steps, window_batch)
from dancegen.data.representation import motion_to_rot6d
from dancegen.models import load_model
from dancegen.models.diffusion import CONTEXT_KINDS, DiffusionModel
from dancegen.motion import SMPL_JOINT_NAMES

TINY = dict(fps=25.0, music_features=["fact35"], music_dims=[35], window=30, overlap=6, patch=3, d_model=32,
            layers=1, heads=2, ff=64, diffusion_steps=100, sample_steps=4, chunk=4)


def tiny(**kw) -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(**{**TINY, **kw}).eval()


def test_loss_falls_on_a_tiny_batch():
    model = tiny()
    batch = window_batch(model)
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
    train_steps(model, window_batch(model), 2, 1e-3)  # weights away from their initial values
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
    model.net.forward = lambda x, t, tokens, styles, context=None: windows
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


def test_fill_keeps_key_frames_and_known_joints_exactly():
    from dancegen.models.bailando import LOWER_JOINTS

    model = tiny()
    rot6d = motion_to_rot6d(synthetic_motion(0, 77))
    keys = np.zeros(77, bool)
    keys[[0, 20, 45, 76]] = True
    out = model.fill(rot6d, keys, music(77).features["fact35"], "waltz")
    assert out.shape == rot6d.shape
    assert np.array_equal(out[keys], rot6d[keys])  # root and every rotation at the keys
    assert not np.allclose(out[~keys, 3:], rot6d[~keys, 3:], atol=1e-3)  # the rest is generated
    # keep the upper body (and the root's path) at every frame, generate the legs, without music
    joints = np.ones((77, 24), bool)
    joints[:, list(LOWER_JOINTS)] = False
    out = model.fill(rot6d, joints, None)
    leg_columns = np.concatenate([np.arange(3 + 6 * j, 9 + 6 * j) for j in LOWER_JOINTS])
    kept = np.setdiff1d(np.arange(rot6d.shape[1]), leg_columns)
    assert np.array_equal(out[:, kept], rot6d[:, kept])
    assert not np.allclose(out[:, leg_columns], rot6d[:, leg_columns], atol=1e-3)


def test_bend_passes_through_the_known_frames_linearly():
    from dancegen.models.diffusion import bend

    error = np.array([[1.0], [9.0], [9.0], [3.0], [9.0]])
    known = np.array([True, False, False, True, False])
    assert np.allclose(bend(error, known)[:, 0], [1, 5 / 3, 7 / 3, 3, 3])
    assert not bend(error, np.zeros(5, bool)).any()


def test_key_poses_land_on_every_nth_beat():
    from dancegen.models import Music
    from dancegen.motion.rotations import axis_angle_to_matrix

    model = tiny(floor_radius=None)
    song = music(120)
    song.features["fact35"][:, 34] = 0
    song.features["fact35"][10::12, 34] = 1  # a beat every 12 frames from frame 10
    poses = synthetic_motion(5, 3)
    motion = model.generate(song, seed=0, key_poses=poses, key_beats=2)
    for i, frame in enumerate((10, 34, 58, 82, 106)):  # every second beat, the poses in turn
        got = axis_angle_to_matrix(torch.from_numpy(motion.rotations[frame, 1:]))
        want = axis_angle_to_matrix(torch.from_numpy(poses.rotations[i % 3, 1:]))
        assert torch.allclose(got, want, atol=1e-4), frame
    assert not np.allclose(motion.rotations[22, 1:], poses.rotations[0, 1:], atol=1e-2)
    beats = Music(song.features, song.fps, beats=np.array([0.4, 2.0]))  # given beat times win
    assert model._key_pose_frames(beats, song.features["fact35"], 120, 1).tolist() == [10, 50]


def test_key_poses_from_the_command_line(tmp_path: Path, capsys):
    import soundfile as sf

    from dancegen.cli import main
    from dancegen.motion import Motion

    sr = 22050
    t = np.arange(4 * sr) / sr
    sf.write(tmp_path / "song.wav", (0.5 * np.sin(2 * np.pi * 440 * t) * (np.mod(t, 0.5) < 0.05)).astype(np.float32), sr)
    synthetic_motion(1, 2).save(tmp_path / "poses.npz")
    tiny().save(tmp_path / "model")
    args = ["generate", str(tmp_path / "song.wav"), "-o", str(tmp_path / "out"), "--formats", "npz", "-q",
            "--key-poses", str(tmp_path / "poses.npz"), "--key-beats", "1"]
    assert main([*args, "--model", str(tmp_path / "model")]) == 0
    assert Motion.load(tmp_path / "out" / "song.npz").num_frames > 50
    assert main(args) == 2  # the bundled bailando model places no key poses
    assert "cannot place key poses" in capsys.readouterr().err


def test_stitch_from_the_command_line(tmp_path: Path, capsys, monkeypatch):
    """`--stitch bidirectional` reaches a diffusion model's `generate`; a model without windows refuses it."""
    import soundfile as sf

    from dancegen.cli import main
    from dancegen.models.diffusion import DiffusionModel

    sr = 22050
    sf.write(tmp_path / "song.wav", (0.1 * np.sin(2 * np.pi * 440 * np.arange(4 * sr) / sr)).astype(np.float32), sr)
    tiny().save(tmp_path / "model")
    seen = []
    generate = DiffusionModel.generate
    monkeypatch.setattr(DiffusionModel, "generate", lambda self, music, stitch=None, **kw: seen.append(stitch) or
                        generate(self, music, stitch=stitch, **kw))
    args = ["generate", str(tmp_path / "song.wav"), "-o", str(tmp_path / "out"), "--formats", "npz", "-q",
            "--stitch", "bidirectional"]
    assert main([*args, "--model", str(tmp_path / "model")]) == 0 and seen == ["bidirectional"]
    assert main(args) == 2
    assert "cannot choose how its windows are stitched" in capsys.readouterr().err


LODGE = dict(global_stride=4, global_window=8, global_overlap=2, global_layers=1)


def test_global_stage_trains_only_the_coarse_denoiser_on_coarse_windows():
    model = tiny(**LODGE).train()
    model.set_stage("global")
    inputs, outputs = model.windows()
    assert inputs["fact35"][0] == 32 and outputs["rot6d"][0] == 33  # 8 coarse frames of 4 (the local 30 crop it)
    batch = window_batch(model)
    local = {k: v.clone() for k, v in model.net.state_dict().items()}
    before = fixed_loss(model, batch)
    train_steps(model, batch, 15, 5e-3)
    assert fixed_loss(model, batch) < 0.7 * before
    assert all(torch.equal(v, model.net.state_dict()[k]) for k, v in local.items())
    model.set_stage("local")
    loss, terms = model.loss(batch)  # on a crop of its 30 frames
    assert torch.isfinite(loss) and "foot" in terms


def test_coarse_to_fine_passes_through_the_global_stages_poses_and_path():
    """Lodge: the windows fill in between the global stage's poses, which come back exactly, on its path."""
    from dancegen.motion.rotations import axis_angle_to_matrix, sixd_to_matrix

    model = tiny(**LODGE)
    captured = {}
    original = model._global_keys

    def spy(*args):
        captured["keys"] = original(*args)
        return captured["keys"]

    model._global_keys = spy
    motion = model.generate(music(77), seed=0)
    known, mask, path = captured["keys"]
    at = np.flatnonzero(mask[:, 0].numpy())
    assert list(at) == [3 + 4 * i for i in range(19)]  # every 4th frame, the last of each coarse step
    poses = (known * model.motion_std + model.motion_mean)[at, 3:].unflatten(-1, (24, 6))
    rotations = axis_angle_to_matrix(torch.from_numpy(motion.rotations[at]).float())
    assert torch.allclose(rotations, sixd_to_matrix(poses), atol=1e-4)
    assert np.allclose(motion.root_translation[at][:, [0, 2]], path[at].numpy(), atol=1e-5)
    plain = model.generate(music(77), seed=0, coarse_to_fine=False)
    assert not np.allclose(plain.rotations, motion.rotations, atol=1e-3)
    again = model.generate(music(77), seed=0)
    assert np.array_equal(again.rotations, motion.rotations)


def test_signal_weighting_of_the_auxiliary_terms():
    model = tiny()
    batch = window_batch(model)
    uniform = model.loss(batch, torch.Generator().manual_seed(1))[1]
    model.aux_weighting = "signal"
    signal = model.loss(batch, torch.Generator().manual_seed(1))[1]
    assert torch.equal(uniform["x0"], signal["x0"])  # the same draw; x0 itself is not weighted
    assert not torch.isclose(uniform["joint_velocity"], signal["joint_velocity"])
    with pytest.raises(ValueError, match="aux_weighting"):
        tiny(aux_weighting="snr")


def test_bidirectional_stitch_conditions_each_window_between_on_both_neighbours():
    """BADM: every other window first, alone; then each window between them with its previous and next
    slice's overlapping frames known (shown to the denoiser as context, and kept), so the dance is theirs there."""
    model = tiny(context_input=True, stitch="bidirectional")
    model.net.context_in.weight.data.normal_(0, 0.1)  # as if trained: the context changes the estimate
    seen, calls = [], []
    forward = model.net.forward
    model.net.forward = lambda *args: (seen.append(args[4].clone()), forward(*args))[1]
    run = model._sample_windows

    def spy(*args):
        calls.append((args, run(*args)))
        return calls[-1][1]

    model._sample_windows = spy
    out = model.sample(torch.zeros(78, 35), generator=torch.Generator().manual_seed(0))  # 3 windows of 30, stride 24
    (first_args, (first, covered)), (between_args, (between, filled)) = calls
    assert first_args[3].tolist() == [0, 48] and between_args[3].tolist() == [24]
    mask = between_args[7]
    edges = np.r_[24:30, 48:54]
    assert mask[edges].all() and not mask[30:48].any()  # the previous and the next slice's frames
    assert torch.equal(between_args[6][edges], first[edges])
    assert torch.equal(out[edges], first[edges]) and torch.equal(out[30:48], between[30:48])
    assert torch.equal(out[:24], first[:24]) and torch.equal(out[54:], first[54:78])
    d = model.motion_dim
    assert not seen[0][..., d:].any() and seen[-1][0, :6, d:].all() and not seen[-1][0, 6:24, d:].any()
    averaged = model.sample(torch.zeros(78, 35), generator=torch.Generator().manual_seed(0), stitch="average")
    assert not torch.allclose(averaged, out, atol=1e-3)
    del model._sample_windows, model.net.forward
    for frames in (30, 200):  # one window; many, both kinds of pass
        motion = model.generate(music(frames), seed=0)
        assert motion.num_frames == frames and np.isfinite(motion.rotations).all()
    with pytest.raises(ValueError, match="stitch"):
        tiny(stitch="sideways")


def test_context_input_starts_as_the_plain_model_and_learns_from_known_frames():
    plain = tiny()
    model = tiny(context_input=True)
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["net.context_in.bias", "net.context_in.weight"] and not unexpected
    a, b = plain.generate(music(77), seed=1), model.generate(music(77), seed=1)
    assert np.array_equal(a.rotations, b.rotations)  # zero-initialised: a fine-tune starts where it was
    batch = window_batch(model)
    before = fixed_loss(model, batch)
    train_steps(model, batch, 15, 5e-3)
    assert fixed_loss(model, batch) < 0.5 * before
    assert model.net.context_in.weight.abs().sum() > 0


def test_training_context_kinds():
    model = tiny(context_input=True)
    g = torch.Generator().manual_seed(0)
    frames = model._training_context(4000, 30, lambda *shape: torch.rand(*shape, generator=g)).numpy()
    previous, following = np.arange(30) < 6, np.arange(30) >= 24
    kinds = {"none": ~frames.any(1), "previous": (frames == previous).all(1), "next": (frames == following).all(1),
             "both": (frames == (previous | following)).all(1)}
    for kind, rows in kinds.items():
        assert abs(rows.mean() - CONTEXT_KINDS[kind]) < 0.03, kind
    keys = frames[~np.any(list(kinds.values()), axis=0)]
    assert abs(len(keys) / 4000 - CONTEXT_KINDS["keys"]) < 0.03 and keys.sum(1).min() >= 1
