"""BVH writing and reading, and the BVH + audio pairs dataset, on small files the tests write."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.spatial.transform import Rotation

import dancegen.datasets  # noqa: F401  (registers every loader)
from dancegen.datasets import bvh_pairs, open_dataset
from dancegen.errors import UserError
from dancegen.motion import Motion, Skeleton, read_bvh, smpl_skeleton, write_bvh
from dancegen.motion import bvh as bvh_module

TOLERANCE = 1e-4  # metres: a written file read back gives the same world positions within 0.1 mm


def random_poses(frames: int = 50, seed: int = 0) -> Motion:
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=(frames, 24, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    rotvecs = axis * rng.uniform(0, np.pi, size=(frames, 24, 1))
    return Motion(60, smpl_skeleton(), rng.normal(scale=2.0, size=(frames, 3)), rotvecs)


def dance_like(frames: int = 240, fps: float = 30.0, seed: int = 1) -> Motion:
    """Smooth motion with large joint swings, a travelling root spinning through full turns,
    and frames at the Z-X-Y Euler singularity (X rotation of +-90 degrees)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None] / fps
    freq = rng.uniform(0.3, 2.0, size=(1, 24 * 3))
    phase = rng.uniform(0, 2 * np.pi, size=(1, 24 * 3))
    amplitude = rng.uniform(0.2, 1.6, size=(1, 24 * 3))
    euler = (amplitude * np.sin(2 * np.pi * freq * t + phase)).reshape(frames, 24, 3)
    euler[:, 0] = np.stack([0.2 * np.sin(t[:, 0]), 0.1 * np.cos(t[:, 0]), 1.5 * t[:, 0]], -1)  # spinning root
    euler[::17, :, 1] = np.pi / 2  # gimbal lock of ZXY
    euler[8::17, :, 1] = -np.pi / 2
    rotvecs = Rotation.from_euler("ZXY", euler.reshape(-1, 3)).as_rotvec().reshape(frames, 24, 3)
    root = np.stack([np.cos(t[:, 0]), 0.9 + 0.05 * np.sin(6 * t[:, 0]), np.sin(t[:, 0]) + 0.3 * t[:, 0]], -1)
    return Motion(fps, smpl_skeleton(), root, rotvecs)


def max_position_error(a: Motion, b: Motion) -> float:
    assert a.skeleton.names == b.skeleton.names
    return float(np.abs(a.positions() - b.positions()).max())


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [100.0, 1.0])
def test_random_poses_round_trip(tmp_path, scale):
    m = random_poses()
    path = tmp_path / "random.bvh"
    write_bvh(m, path, scale=scale)
    back = read_bvh(path, scale=scale)
    assert back.num_frames == m.num_frames and back.fps == 60.0
    assert back.skeleton.names == m.skeleton.names and back.skeleton.parents == m.skeleton.parents
    np.testing.assert_allclose(back.skeleton.offsets, m.skeleton.offsets, atol=1e-6)
    assert max_position_error(back, m) < TOLERANCE


def test_dance_like_motion_round_trip(tmp_path):
    m = dance_like()
    write_bvh(m, tmp_path / "dance.bvh")
    back = read_bvh(tmp_path / "dance.bvh")
    assert back.fps == 30.0
    assert max_position_error(back, m) < TOLERANCE
    # Rotations come back as the same rotations (not only the same positions).
    a = Rotation.from_rotvec(m.rotations.reshape(-1, 3).astype(np.float64))
    b = Rotation.from_rotvec(back.rotations.reshape(-1, 3).astype(np.float64))
    assert np.degrees((a.inv() * b).magnitude()).max() < 0.01


def test_real_dance_rotations_round_trip(tmp_path, shared_data):
    """Real street-dance joint rotations (Motorica, exp-map) on the SMPL skeleton."""
    path = sorted((shared_data / "motorica_lda").glob("*.npz"))[0]
    with np.load(path) as z:
        columns = [str(c) for c in z["motion_columns"]]
        keep = [i for i, c in enumerate(columns) if c.endswith(("_alpha", "_beta", "_gamma"))]
        rotvecs = z["motion"][:600, keep].reshape(600, -1, 3)
    joints = min(rotvecs.shape[1], 24)
    rotations = np.zeros((600, 24, 3))
    rotations[:, :joints] = rotvecs[:, :joints]
    root = np.cumsum(np.full((600, 3), 0.01), axis=0)
    m = Motion(30, smpl_skeleton(), root, rotations)
    write_bvh(m, tmp_path / "real.bvh")
    assert max_position_error(read_bvh(tmp_path / "real.bvh"), m) < TOLERANCE


def test_any_skeleton_round_trips_in_file_order(tmp_path):
    sk = Skeleton(
        ("pelvis", "spine", "head", "arm", "leg"),
        (-1, 0, 1, 1, 0),
        [[0.0, 0.02, 0.0], [0, 0.3, 0], [0, 0.25, 0.05], [0.2, 0.2, 0], [0.1, -0.5, 0]],
    )
    rng = np.random.default_rng(4)
    m = Motion(24, sk, rng.normal(size=(7, 3)), rng.normal(size=(7, 5, 3)))
    write_bvh(m, tmp_path / "custom.bvh")
    back = read_bvh(tmp_path / "custom.bvh")
    assert back.skeleton.names == sk.names and back.skeleton.parents == sk.parents
    np.testing.assert_allclose(back.skeleton.offsets, sk.offsets, atol=1e-6)  # root offset kept too
    assert back.fps == 24.0
    assert max_position_error(back, m) < TOLERANCE


def test_written_file_layout(tmp_path):
    m = random_poses(frames=3)
    write_bvh(m, tmp_path / "a.bvh")
    text = (tmp_path / "a.bvh").read_text()
    assert text.startswith("HIERARCHY\nROOT root\n")
    assert "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" in text
    assert text.count("CHANNELS 3 Zrotation Xrotation Yrotation") == 23
    assert text.count("End Site") == 5  # ltoes, rtoes, head, lhand, rhand
    assert "\nFrames: 3\nFrame Time: 0.01666666667\n" in text
    first_frame = text.split("Frame Time:")[1].splitlines()[1].split()
    assert len(first_frame) == 6 + 3 * 23
    # Centimetres: the root position channels are 100x the metres.
    np.testing.assert_allclose([float(v) for v in first_frame[:3]], m.root_translation[0] * 100, atol=1e-5)


def test_fps_from_frame_time(tmp_path):
    for fps in (25.0, 29.97, 60.0, 120.0):
        m = random_poses(frames=2)
        write_bvh(Motion(fps, m.skeleton, m.root_translation, m.rotations), tmp_path / "f.bvh")
        assert read_bvh(tmp_path / "f.bvh").fps == pytest.approx(fps, rel=1e-7)
    assert bvh_module._snap_fps("0.033333", 0.033333) == 30.0
    assert bvh_module._snap_fps("0.0083333", 0.0083333) == 120.0
    assert bvh_module._snap_fps("0.033367", 0.033367) == pytest.approx(29.97, abs=1e-3)


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.bvh"
    target.write_text("previous")

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bvh_module.np, "savetxt", fail)
    with pytest.raises(RuntimeError):
        write_bvh(random_poses(frames=2), target)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bvh"]
    monkeypatch.undo()
    bad = random_poses(frames=2)
    bad.rotations[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_bvh(bad, tmp_path / "nan.bvh")
    assert not (tmp_path / "nan.bvh").exists()


# --- reading general BVH files ------------------------------------------------------------------

# Interleaved channels in unusual orders, 6 channels on a non-root joint (constant, equal to its
# offset), 2 rotation channels, a named End Site, braces on the name line, CRLF line endings.
GENERAL_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 1.0 2.0 3.0
  CHANNELS 6 Yrotation Xposition Zrotation Yposition Xrotation Zposition
  JOINT Spine {
    OFFSET 0 10 0
    CHANNELS 3 Xrotation Yrotation Zrotation
    JOINT Head
    {
\tOFFSET 0 20 0
\tCHANNELS 6 Xposition Yposition Zposition Xrotation Zrotation Yrotation
\tEnd Site Head_end
\t{
\t\tOFFSET 0 5 0
\t}
    }
  }
  JOINT Leg
  {
    OFFSET 5 -10 0
    CHANNELS 2 Zrotation Xrotation
    End Site
    {
      OFFSET 0 -40 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.04
10 1 20 2 30 3 40 50 60 0 20 0 70 80 90 15 25
-90 -5 45 95 89.9 7 -30 60 10 0 20 0 -45 170 -100 -80 35
""".replace("\n", "\r\n")
_FRAMES = "\r\n".join(GENERAL_BVH.split("Frame Time: 0.04\r\n")[1].splitlines())


def expected_general_positions() -> np.ndarray:
    """World positions, metres, by an independent FK with scipy (Blender's BVH semantics)."""
    frames = [[float(v) for v in line.split()] for line in _FRAMES.splitlines()]
    out = []
    for f in frames:
        ry, px, rz, py, rx, pz = f[0:6]
        hips_r = Rotation.from_euler("YZX", [ry, rz, rx], degrees=True)
        hips_p = np.array([px, py, pz])
        spine_r = hips_r * Rotation.from_euler("XYZ", f[6:9], degrees=True)
        spine_p = hips_p + hips_r.apply([0, 10, 0])
        head_p = spine_p + spine_r.apply(f[9:12])
        leg_p = hips_p + hips_r.apply([5, -10, 0])
        out.append([hips_p, spine_p, head_p, leg_p])
    return np.array(out) / 100.0


def test_reads_general_bvh(tmp_path):
    path = tmp_path / "general.bvh"
    path.write_bytes(GENERAL_BVH.encode())
    m = read_bvh(path)
    assert m.skeleton.names == ("Hips", "Spine", "Head", "Leg")  # End Sites are not joints
    assert m.skeleton.parents == (-1, 0, 1, 0)
    assert m.fps == 25.0 and m.num_frames == 2
    np.testing.assert_allclose(m.skeleton.offsets, [[0.01, 0.02, 0.03], [0, 0.1, 0], [0, 0.2, 0], [0.05, -0.1, 0]])
    np.testing.assert_allclose(m.positions(), expected_general_positions(), atol=1e-6)


def test_reads_metres_with_scale_one(tmp_path):
    path = tmp_path / "general.bvh"
    path.write_bytes(GENERAL_BVH.encode())
    np.testing.assert_allclose(read_bvh(path, scale=1.0).positions(), expected_general_positions() * 100, atol=1e-4)


def test_joint_order(tmp_path):
    path = tmp_path / "general.bvh"
    path.write_bytes(GENERAL_BVH.encode())
    m = read_bvh(path, joint_order=["Hips", "Leg", "Spine", "Head"])
    assert m.skeleton.parents == (-1, 0, 0, 2)
    np.testing.assert_allclose(m.positions(), expected_general_positions()[:, [0, 3, 1, 2]], atol=1e-6)
    with pytest.raises(UserError, match="joint order"):
        read_bvh(path, joint_order=["Hips", "Leg", "Spine"])


def test_moving_non_root_joint_warns(tmp_path):
    path = tmp_path / "stretch.bvh"
    path.write_bytes(GENERAL_BVH.replace("10 0 20 0 -45", "10 0 25 0 -45").encode())
    with pytest.warns(UserWarning, match="Head"):
        m = read_bvh(path)
    np.testing.assert_allclose(m.skeleton.offsets[2], [0, 0.225, 0], atol=1e-6)


# --- bad files: one line naming the file and the problem ---------------------------------------


def _mutations():
    g = GENERAL_BVH
    first, second = _FRAMES.splitlines()
    return {
        "empty": ("", "empty"),
        "blank": ("\n \n", "empty"),
        "not_bvh": ("hello world\n1 2 3\n", "HIERARCHY"),
        "no_motion": (g.split("MOTION")[0], "no MOTION"),
        "truncated_hierarchy": (g[:200], "truncated"),
        "truncated_frame": (g[: g.rindex(" 35")], "truncated"),
        "bad_channel": (g.replace("Xrotation Yrotation Zrotation", "Xrotation Yrotation Wrotation"), "Wrotation"),
        "bad_channel_count": (g.replace("CHANNELS 3", "CHANNELS x"), "channel count"),
        "too_few_values": (g.replace(first, first.rsplit(" ", 1)[0]), "frame 0 has 16 values, expected 17"),
        "too_many_values": (g.replace(second, second + " 1"), "frame 1 has 18 values"),
        "nan": (g.replace(" 95 ", " nan "), "NaN"),
        "inf": (g.replace(" 95 ", " inf "), "NaN or infinite"),
        "not_a_number": (g.replace(" 95 ", " abc "), "'abc', not a number"),
        "more_frames_declared": (g.replace("Frames: 2", "Frames: 3"), "Frames: 3 but the file holds 2"),
        "fewer_frames_declared": (g.replace("Frames: 2", "Frames: 1"), "Frames: 1 but the file holds 2"),
        "zero_frames": (g.split("Frames:")[0] + "Frames: 0\nFrame Time: 0.04\n", "no frames"),
        "bad_frame_time": (g.replace("Frame Time: 0.04", "Frame Time: 0"), "Frame Time"),
        "no_frames_line": (g.replace("Frames: 2", "Framez 2"), "Frames: N"),
        "no_offset": (g.replace("OFFSET 5 -10 0", ""), "no OFFSET"),
        "bad_offset": (g.replace("OFFSET 5 -10 0", "OFFSET 5 -10 x"), "expected a number"),
        "two_roots": (g.replace("MOTION", "ROOT Other\r\n{\r\n OFFSET 0 0 0\r\n}\r\nMOTION"), "more than one ROOT"),
        "stray_word": (g.replace("JOINT Leg", "JOINT Leg\r\n{\r\n BONE", 1), "unexpected 'BONE'"),
        "duplicate_channel": (g.replace("CHANNELS 2 Zrotation Xrotation", "CHANNELS 2 Zrotation Zrotation"), "twice"),
    }


@pytest.mark.parametrize("case", sorted(_mutations()))
def test_bad_bvh_is_a_one_line_user_error(tmp_path, case):
    text, problem = _mutations()[case]
    path = tmp_path / f"{case}.bvh"
    path.write_bytes(text.encode())
    with pytest.raises(UserError) as err:
        read_bvh(path)
    message = str(err.value)
    assert message.startswith(str(path)) and problem in message, message
    assert "\n" not in message


def test_missing_bvh_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_bvh(tmp_path / "nope.bvh")


def test_binary_file_is_a_user_error(tmp_path):
    path = tmp_path / "noise.bvh"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(UserError, match="noise.bvh"):
        read_bvh(path)


# --- the BVH + audio pairs dataset -------------------------------------------------------------


def write_sine(path, seconds: float = 0.5, sample_rate: int = 22050) -> None:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32), sample_rate)


@pytest.fixture
def pairs(tmp_path):
    root = tmp_path / "pairs"
    root.mkdir()
    for i, name in enumerate(["b_take", "a_take"]):
        write_bvh(random_poses(frames=5 + i, seed=i), root / f"{name}.bvh")
    write_sine(root / "a_take.wav")
    write_sine(root / "b_take.flac")
    (root / "notes.txt").write_text("not part of the dataset")
    return root


def test_pairs_dataset(pairs):
    assert bvh_pairs.detect(pairs)
    ds = open_dataset("bvh-wav", pairs)
    assert ds.kind == "bvh-wav" and ds.names == ["a_take", "b_take"] and len(ds) == 2
    assert ds.styles == {"a_take": None, "b_take": None}
    seqs = list(ds)
    assert [s.song.name for s in seqs] == ["a_take.wav", "b_take.flac"]
    assert all(s.offset == 0.0 and s.style is None for s in seqs)
    assert seqs[0].motion.num_frames == 6 and seqs[1].motion.num_frames == 5
    assert max_position_error(seqs[1].motion, random_poses(frames=5, seed=0)) < TOLERANCE


def test_pairs_detect(tmp_path, pairs):
    assert not bvh_pairs.detect(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not bvh_pairs.detect(empty)
    with pytest.raises(UserError, match="no .bvh files"):
        bvh_pairs.open(empty)


def test_pairs_bvh_without_audio(pairs):
    (pairs / "b_take.flac").unlink()
    with pytest.raises(UserError, match=r"b_take\.bvh: no audio partner"):
        open_dataset("bvh-wav", pairs)


def test_pairs_audio_without_bvh(pairs):
    write_sine(pairs / "c_take.wav")
    with pytest.raises(UserError, match=r"c_take\.wav: no motion partner"):
        open_dataset("bvh-wav", pairs)


def test_pairs_two_audio_files_for_one_bvh(pairs):
    write_sine(pairs / "a_take.flac")
    with pytest.raises(UserError, match=r"a_take\.bvh: more than one audio partner"):
        open_dataset("bvh-wav", pairs)


def test_pairs_bad_bvh_is_reported_when_loaded(pairs):
    (pairs / "a_take.bvh").write_text("HIERARCHY\nROOT x\n")
    ds = open_dataset("bvh-wav", pairs)
    with pytest.raises(UserError, match=r"a_take\.bvh"):
        ds.load("a_take")
