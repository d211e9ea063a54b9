"""In-betweening (dancegen/inbetween.py), its metrics (dancegen/metrics/inbetween.py) and `dancegen inbetween`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import synthetic_motion
from dancegen.cli import main
from dancegen.errors import UserError
from dancegen.inbetween import inbetween, interpolate, keyframes
from dancegen.metrics.inbetween import (CONTEXT, continuous_quaternions, evaluate_inbetweening, in_frame_of, l2p,
                                        l2q, npss, position_stats)
from dancegen.models.masked import MaskedMotionModel
from dancegen.motion import Motion, smpl_skeleton

TINY = dict(fps=25.0, window=40, overlap=10, d_model=32, heads=2, ff=64, motion_layers=1, music_layers=1, layers=1)



pytestmark = pytest.mark.usefixtures("one_torch_thread")

def tiny_model() -> MaskedMotionModel:
    torch.manual_seed(0)
    return MaskedMotionModel(**TINY).eval()


def test_keyframes():
    assert keyframes(23, every=5).tolist() == [0, 5, 10, 15, 20, 22]
    assert keyframes(23, keys=[15, 0, 15, 7]).tolist() == [0, 7, 15]
    with pytest.raises(UserError, match="outside"):
        keyframes(23, keys=[0, 23], source="m.bvh")
    with pytest.raises(UserError):
        keyframes(23, every=0)


def test_interpolation_by_hand():
    skeleton = smpl_skeleton()
    root = np.zeros((5, 3))
    root[4] = [4.0, 0.0, -2.0]
    rotations = np.zeros((5, 24, 3))
    rotations[4, 3] = [0, 0, np.pi / 2]  # joint 3 turns 90 degrees about z between the keys
    rotations[1:4] = 1.0  # garbage between the keys: ignored
    out = interpolate(Motion(25.0, skeleton, root, rotations), np.array([0, 4]))
    assert np.allclose(out.root_translation[2], [2.0, 0.0, -1.0]) and np.allclose(out.root_translation[1], [1, 0, -0.5])
    assert np.allclose(out.rotations[2, 3], [0, 0, np.pi / 4], atol=1e-6)  # slerp halfway
    assert np.allclose(out.rotations[1, 3], [0, 0, np.pi / 8], atol=1e-6)
    assert np.allclose(out.rotations[2, 5], 0)
    held = interpolate(Motion(25.0, skeleton, root, rotations), np.array([1, 3]))  # before/after: held
    assert np.array_equal(held.root_translation[0], root[1]) and np.array_equal(held.rotations[4], rotations[3])


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_masked_inbetweening_passes_through_the_keys(fps):
    motion = synthetic_motion(3, 90)
    motion = Motion(fps, motion.skeleton, motion.root_translation, motion.rotations)
    keys = keyframes(motion.num_frames, every=7)
    out = inbetween(tiny_model(), motion, keys, music_features=np.random.default_rng(0).normal(size=(80, 35)))
    assert out.num_frames == motion.num_frames and out.fps == fps
    assert np.array_equal(out.rotations[keys], motion.rotations[keys])
    assert np.array_equal(out.root_translation[keys], motion.root_translation[keys])
    between = np.setdiff1d(np.arange(motion.num_frames), keys)
    assert not np.allclose(out.rotations[between], motion.rotations[between])  # generated, not copied


def test_metrics_by_hand():
    true = np.zeros((2, 3, 4, 3))
    pred = true + [1.0, 0.0, 0.0]
    assert l2p(pred, true, np.zeros((4, 3)), np.ones((4, 3))) == pytest.approx(2.0)  # sqrt(4 joints * 1)
    assert l2p(pred, true, np.zeros((4, 3)), np.full((4, 3), 2.0)) == pytest.approx(1.0)
    q = np.zeros((2, 3, 4, 4))
    q[..., 3] = 1
    assert l2q(q, q) == 0
    assert l2q(-q, q) == pytest.approx(4.0)  # sqrt(4 joints * 2^2)
    # NPSS: an impulse has a flat spectrum (cumulative .25 .5 .75 1), a constant all power at 0 (1 1 1 1)
    impulse, constant = np.array([1.0, 0, 0, 0])[None, :, None], np.ones((1, 4, 1))
    assert npss(constant, impulse) == pytest.approx(0.75 + 0.5 + 0.25)
    assert npss(impulse, impulse) == 0


def test_quaternion_continuity_and_window_frame():
    turn = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0.0]])  # facing +X (local +Z turned 90 degrees about y)
    rotations = np.repeat(turn[None, None], 3, axis=0)
    positions = np.array([[[2.0, 1.0, 3.0]], [[3.0, 1.0, 3.0]], [[4.0, 1.0, 3.0]]])  # walks along +X
    pos, rot = in_frame_of(positions, rotations, 0)
    assert np.allclose(rot[0, 0], np.eye(3)) and np.allclose(pos[:, 0], [[0, 1, 0], [0, 1, 1], [0, 1, 2]])
    q = continuous_quaternions(np.repeat(np.eye(3)[None, None], 4, axis=0))
    assert np.allclose(q[..., 3], 1)


def test_interpolation_is_exact_on_linear_motion_and_scores_zero():
    """A dance whose root moves linearly and whose joints turn at constant speed is what interpolation
    produces: L2P, L2Q and NPSS are zero; holding the last context pose is not."""
    frames = 80
    t = np.arange(frames)[:, None]
    root = np.concatenate([0.01 * t, np.full((frames, 1), 0.9), 0.02 * t], axis=1)
    rotations = np.zeros((frames, 24, 3))
    rotations[:, 1:, 0] = 0.01 * t  # every joint but the root turns about x at a constant rate
    motion = Motion(25.0, smpl_skeleton(), root, rotations)
    sequences = {"a": motion}
    stats = position_stats([motion])
    hold = lambda m, keys, *_: Motion(m.fps, m.skeleton, np.repeat(m.root_translation[CONTEXT - 1:CONTEXT], len(m), 0),
                                      np.repeat(m.rotations[CONTEXT - 1:CONTEXT], len(m), 0))
    results = evaluate_inbetweening(sequences, {"interp": lambda m, keys, *_: interpolate(m, keys), "hold": hold},
                                    stats, gaps=(5, 15))
    for gap in (5, 15):
        assert results["interp"][gap].l2p < 1e-4 and results["interp"][gap].l2q < 1e-4
        assert results["hold"][gap].l2p > 0.1 and results["hold"][gap].l2q > 0.01
    assert results["interp"][5].windows == 1


def test_cli_end_to_end(tmp_path: Path):
    model = tiny_model()
    model.save(tmp_path / "model")
    motion = synthetic_motion(1, 60)
    motion = Motion(25.0, motion.skeleton, motion.root_translation, motion.rotations)
    motion.save(tmp_path / "dance.npz")
    sr = 22050
    sf.write(tmp_path / "song.wav", (0.3 * np.sin(np.arange(4 * sr) * 2 * np.pi * 440 / sr)).astype(np.float32), sr)
    code = main(["inbetween", str(tmp_path / "dance.npz"), "--keys", "0,15,40,59", "-o", str(tmp_path / "out"),
                 "--model", str(tmp_path / "model"), "--song", str(tmp_path / "song.wav"), "--formats", "bvh,npz,mp4", "-q"])
    assert code == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"song.bvh", "song.npz", "song.mp4"}
    with np.load(tmp_path / "out" / "song.npz") as z:
        keys = [0, 15, 40, 59]
        assert np.array_equal(z["rotations"][keys], motion.rotations[keys])
        assert np.array_equal(z["root_translation"][keys], motion.root_translation[keys])
    code = main(["inbetween", str(tmp_path / "dance.npz"), "--every", "10", "-o", str(tmp_path / "plain"),
                 "--model", "interpolation", "--formats", "npz,html", "-q"])
    assert code == 0 and {p.name for p in (tmp_path / "plain").iterdir()} == {"dance.npz", "dance.html"}


def test_cli_default_is_interpolation(tmp_path: Path, capsys, monkeypatch):
    """No trained in-betweening model ships with dancegen: without --model a fresh clone interpolates
    (and says so), even where out/masked/best is absent."""
    monkeypatch.chdir(tmp_path)
    motion = synthetic_motion(3, 50)
    motion.save(tmp_path / "dance.npz")
    assert main(["inbetween", "dance.npz", "--every", "12", "-o", "out", "--formats", "npz", "-q"]) == 0
    out = Motion.load(tmp_path / "out" / "dance.npz")
    expected = interpolate(motion, keyframes(50, every=12))
    np.testing.assert_allclose(out.rotations, expected.rotations, atol=1e-6)
    np.testing.assert_allclose(out.root_translation, expected.root_translation, atol=1e-6)
    assert not np.allclose(out.rotations, motion.rotations, atol=1e-3)  # the frames between keys were made
    assert "by interpolation" in capsys.readouterr().out


def test_cli_bad_input(tmp_path: Path, capsys):
    synthetic_motion(0, 30).save(tmp_path / "d.npz")
    assert main(["inbetween", str(tmp_path / "d.npz"), "--keys", "0,99", "-o", str(tmp_path / "o"),
                 "--model", "interpolation"]) == 2
    assert "d.npz" in capsys.readouterr().err
    assert main(["inbetween", str(tmp_path / "missing.bvh"), "--every", "5", "-o", str(tmp_path / "o")]) == 2
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["inbetween", str(tmp_path / "bad.npz"), "--every", "5", "-o", str(tmp_path / "o"),
                 "--model", "interpolation"]) == 2


def test_keep_joints_generates_the_rest_with_a_diffusion_model(tmp_path: Path, capsys):
    from dancegen.inbetween import JOINT_GROUPS
    from dancegen.models.diffusion import DiffusionModel

    torch.manual_seed(0)
    DiffusionModel(fps=25.0, window=30, overlap=6, patch=3, d_model=32, layers=1, heads=2, ff=64,
                   diffusion_steps=100, sample_steps=4, chunk=4).save(tmp_path / "diffusion")
    motion = synthetic_motion(2, 60)
    motion.save(tmp_path / "dance.npz")
    args = ["inbetween", str(tmp_path / "dance.npz"), "-o", str(tmp_path / "out"), "--formats", "npz", "-q",
            "--keep-joints", "upper"]
    assert main([*args, "--model", str(tmp_path / "diffusion")]) == 0
    out = Motion.load(tmp_path / "out" / "dance.npz")
    upper, legs = list(JOINT_GROUPS["upper"]), [1, 2, 4, 5, 7, 8, 10, 11]
    assert out.num_frames == 60
    assert np.array_equal(out.rotations[:, upper], motion.rotations[:, upper])
    assert np.array_equal(out.root_translation, motion.root_translation)
    assert not np.allclose(out.rotations[:, legs], motion.rotations[:, legs], atol=1e-3)
    assert main([*args, "--model", "interpolation"]) == 2  # only a model that in-paints joints
    assert main([*args[:-1], "elbow", "--model", str(tmp_path / "diffusion")]) == 2
    err = capsys.readouterr().err
    assert "--keep-joints needs a model" in err and "--keep-joints takes upper, lower" in err
