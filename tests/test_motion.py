"""The motion core: forward kinematics, rotation conversions (against scipy), Motion itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dancegen.errors import UserError
from dancegen.motion import Motion, Skeleton, forward_kinematics, smpl_skeleton
from dancegen.motion import rotations as rot


def random_motion(frames: int = 12, seed: int = 0, fps: float = 30.0) -> Motion:
    rng = np.random.default_rng(seed)
    return Motion(fps, smpl_skeleton(), rng.normal(size=(frames, 3)), rng.normal(size=(frames, 24, 3)))


def random_rotvecs(n: int, seed: int = 0) -> np.ndarray:
    """Rotation vectors with angles spread over [0, pi)."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return axis * rng.uniform(0, np.pi * 0.999, size=(n, 1))


def fk(rotvecs: torch.Tensor, root: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    pos, _ = forward_kinematics(
        rot.axis_angle_to_matrix(rotvecs), root, torch.from_numpy(skeleton.offsets).to(rotvecs), skeleton.parents
    )
    return pos


# --- forward kinematics -----------------------------------------------------------------------


def test_zero_rotations_give_rest_pose_plus_root_translation():
    sk = smpl_skeleton()
    root = np.random.default_rng(1).normal(size=(5, 3))
    m = Motion(30, sk, root, np.zeros((5, 24, 3)))
    np.testing.assert_allclose(m.positions(), sk.rest_positions()[None] + root[:, None], atol=1e-6)


def test_rest_pose_is_the_smpl_template_y_up_facing_z_left_on_x():
    p = smpl_skeleton().rest_positions()
    names = smpl_skeleton().names
    at = {n: p[i] for i, n in enumerate(names)}
    assert at["head"][1] > at["root"][1] > at["lankle"][1]  # Y up
    assert at["lshoulder"][0] > 0 > at["rshoulder"][0]  # body's left on +X
    assert at["ltoes"][2] > at["lankle"][2]  # toes point forward, +Z


def test_root_joint_follows_root_translation():
    m = random_motion()
    np.testing.assert_allclose(m.positions()[:, 0], m.root_translation, atol=1e-6)


def test_fk_is_batched_over_leading_dimensions():
    sk = smpl_skeleton()
    rotvecs = torch.from_numpy(random_rotvecs(2 * 3 * 24).reshape(2, 3, 24, 3))
    root = torch.randn(2, 3, 3, dtype=torch.float64)
    batched = fk(rotvecs, root, sk)
    assert batched.shape == (2, 3, 24, 3)
    for a in range(2):
        for b in range(3):
            torch.testing.assert_close(batched[a, b], fk(rotvecs[a, b], root[a, b], sk))


def test_fk_world_rotations_compose_parent_rotations():
    sk = smpl_skeleton()
    mats = rot.axis_angle_to_matrix(torch.from_numpy(random_rotvecs(24)))
    _, world = forward_kinematics(mats, torch.zeros(3, dtype=torch.float64), torch.from_numpy(sk.offsets), sk.parents)
    for j, p in enumerate(sk.parents):
        expected = mats[j] if p < 0 else world[p] @ mats[j]
        torch.testing.assert_close(world[j], expected)


def test_fk_is_differentiable_gradcheck():
    sk = Skeleton(("a", "b", "c", "d"), (-1, 0, 1, 1), [[0, 0, 0], [0, 0.3, 0], [0.2, 0.1, 0], [-0.1, 0.2, 0.3]])
    rotvecs = torch.from_numpy(random_rotvecs(4, seed=3)).requires_grad_()
    root = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r, t: fk(r, t, sk), (rotvecs, root))


def test_fk_gradient_recovers_a_pose_from_positions():
    """Fitting rotations to target joint positions by gradient descent reaches the targets."""
    sk = smpl_skeleton()
    target = fk(torch.from_numpy(random_rotvecs(24, seed=5) * 0.5), torch.zeros(3, dtype=torch.float64), sk)
    zero = torch.zeros(3, dtype=torch.float64)
    rotvecs = torch.full((24, 3), 1e-3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([rotvecs], max_iter=200, line_search_fn="strong_wolfe", tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = (fk(rotvecs, zero, sk) - target).square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    error = (fk(rotvecs, zero, sk) - target).norm(dim=-1).max()
    assert error < 1e-3  # metres


def test_bone_lengths_stay_constant_under_fk():
    m = random_motion(frames=20)
    pos = m.positions()
    lengths = m.skeleton.bone_lengths()
    for j, p in enumerate(m.skeleton.parents):
        if p >= 0:
            np.testing.assert_allclose(np.linalg.norm(pos[:, j] - pos[:, p], axis=-1), lengths[j], atol=1e-5)


# --- rotation conversions against scipy --------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    rv = random_rotvecs(200, seed=7)
    return torch.from_numpy(rv), Rotation.from_rotvec(rv)


def test_axis_angle_matrix_quaternion_match_scipy(reference):
    rv, r = reference
    np.testing.assert_allclose(rot.axis_angle_to_matrix(rv).numpy(), r.as_matrix(), atol=1e-10)
    q = rot.axis_angle_to_quaternion(rv).numpy()  # (x, y, z, w), like scipy
    sign = np.sign(np.sum(q * r.as_quat(), axis=-1, keepdims=True))
    np.testing.assert_allclose(q * sign, r.as_quat(), atol=1e-10)
    np.testing.assert_allclose(rot.quaternion_to_matrix(torch.from_numpy(r.as_quat())).numpy(), r.as_matrix(), atol=1e-10)
    np.testing.assert_allclose(rot.quaternion_to_axis_angle(torch.from_numpy(r.as_quat())).numpy(), r.as_rotvec(), atol=1e-8)


def test_conversions_round_trip(reference):
    rv, r = reference
    m = rot.axis_angle_to_matrix(rv)
    torch.testing.assert_close(rot.matrix_to_axis_angle(m), rv, atol=1e-8, rtol=0)
    q = rot.matrix_to_quaternion(m)
    torch.testing.assert_close(rot.quaternion_to_matrix(q), m, atol=1e-10, rtol=0)
    torch.testing.assert_close(rot.quaternion_to_axis_angle(rot.axis_angle_to_quaternion(rv)), rv, atol=1e-8, rtol=0)
    torch.testing.assert_close(rot.sixd_to_matrix(rot.matrix_to_6d(m)), m, atol=1e-10, rtol=0)


def test_6d_is_the_first_two_matrix_columns(reference):
    _, r = reference
    mats = r.as_matrix()
    sixd = rot.matrix_to_6d(torch.from_numpy(mats)).numpy()
    np.testing.assert_allclose(sixd.reshape(-1, 3, 2), mats[:, :, :2])


def test_6d_of_a_perturbed_vector_gives_a_proper_rotation(reference):
    _, r = reference
    sixd = rot.matrix_to_6d(torch.from_numpy(r.as_matrix())) + 0.1 * torch.randn(200, 6, dtype=torch.float64)
    m = rot.sixd_to_matrix(sixd)
    eye = torch.eye(3, dtype=torch.float64).expand_as(m)
    torch.testing.assert_close(m.transpose(-1, -2) @ m, eye, atol=1e-10, rtol=0)
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(200, dtype=torch.float64))


@pytest.mark.parametrize("convention", ["ZXY", "XYZ", "YZX", "zyx", "xyz"])
def test_euler_matches_scipy_and_round_trips(reference, convention):
    _, r = reference
    angles = r.as_euler(convention, degrees=True)
    m = rot.euler_to_matrix(torch.from_numpy(angles), convention, degrees=True)
    np.testing.assert_allclose(m.numpy(), r.as_matrix(), atol=1e-10)
    back = rot.matrix_to_euler(torch.from_numpy(r.as_matrix()), convention, degrees=True)
    torch.testing.assert_close(rot.euler_to_matrix(back, convention, degrees=True), m, atol=1e-8, rtol=0)


def test_euler_zxy_is_bvh_order():
    """BVH channels `Zrotation Xrotation Yrotation` mean R = Rz Rx Ry."""
    z, x, y = 30.0, -50.0, 70.0
    m = rot.euler_to_matrix(torch.tensor([z, x, y], dtype=torch.float64), "ZXY", degrees=True).numpy()
    expected = (
        Rotation.from_euler("z", z, degrees=True) * Rotation.from_euler("x", x, degrees=True)
        * Rotation.from_euler("y", y, degrees=True)
    ).as_matrix()
    np.testing.assert_allclose(m, expected, atol=1e-12)


def _hard_rotations(dtype) -> torch.Tensor:
    """Axis-angles at every kind of edge: random, tiny (first-order and Taylor branches), near and at
    pi, at gimbal lock for ZXY (x = +-90 degrees), and batched over two dimensions."""
    g = torch.Generator().manual_seed(3)
    axes = torch.nn.functional.normalize(torch.randn(50, 3, generator=g, dtype=torch.float64), dim=-1)
    angles = torch.cat([torch.rand(20, generator=g, dtype=torch.float64) * torch.pi,
                        torch.tensor([0.0, 1e-9, 1e-7, 1e-3, 0.05, 0.2, torch.pi - 1e-6, torch.pi, torch.pi - 1e-3, 3.0],
                                     dtype=torch.float64).repeat(3)])
    rv = axes * angles[:, None]
    lock = rot.axis_angle_to_matrix(torch.tensor([[torch.pi / 2, 0, 0], [-torch.pi / 2, 0, 0]], dtype=torch.float64))
    lock = rot.axis_angle_to_matrix(torch.tensor([[0, 0, 0.7], [0, 0, -0.4]], dtype=torch.float64)) @ lock
    return torch.cat([rv, rot.matrix_to_axis_angle(lock)]).to(dtype).reshape(2, 26, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_conversions_written_here_give_exactly_romas_results(dtype):
    """axis-angle <-> matrix, 6-D -> matrix and matrix -> Euler are written in rotations.py (roma's
    import costs 1.4 s of `dancegen generate`) with roma's operations: the results are roma's, bit for bit."""
    roma = pytest.importorskip("roma")
    rv = _hard_rotations(dtype)
    m = roma.rotvec_to_rotmat(rv)
    assert torch.equal(rot.axis_angle_to_matrix(rv), m)
    assert torch.equal(rot.matrix_to_axis_angle(m), roma.rotmat_to_rotvec(m))
    assert torch.equal(rot.matrix_to_quaternion(m), roma.rotmat_to_unitquat(m))
    sixd = rot.matrix_to_6d(m) + 0.1 * torch.randn(m.shape[:-2] + (6,), generator=torch.Generator().manual_seed(0)).to(dtype)
    assert torch.equal(rot.sixd_to_matrix(sixd), roma.special_gramschmidt(sixd.unflatten(-1, (3, 2))))
    for convention in ("ZXY", "XYZ", "zyx", "ZYZ", "xzx"):
        for degrees in (True, False):
            ours = rot.matrix_to_euler(m, convention, degrees=degrees)
            assert torch.equal(ours, roma.rotmat_to_euler(convention, m, degrees=degrees)), convention


def test_the_generate_path_does_not_import_roma():
    """roma imports torch._dynamo (1.4 s): the conversions a dance needs must not pull it in."""
    import subprocess
    import sys

    code = ("import sys, torch; from dancegen.motion import Motion, smpl_skeleton, write_bvh; "
            "from dancegen.motion.rotations import matrix_to_axis_angle, sixd_to_matrix; "
            "m = Motion(30, smpl_skeleton(), torch.zeros(5, 3).numpy(), torch.full((5, 24, 3), 0.3).numpy()); "
            "m.positions(); matrix_to_axis_angle(sixd_to_matrix(torch.randn(4, 6))); write_bvh(m, sys.argv[1]); "
            "print('roma' in sys.modules, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, "/dev/null"], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --- Motion ------------------------------------------------------------------------------------


def test_save_load_round_trip_without_pickle(tmp_path):
    m = random_motion(fps=29.97)
    path = tmp_path / "take.npz"
    m.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["take.npz"]  # no temporary left behind
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert {"fps", "joint_names", "parents", "offsets", "root_translation", "rotations"} <= set(z.files)
    back = Motion.load(path)
    assert back.fps == pytest.approx(29.97)
    assert back.skeleton.names == m.skeleton.names and back.skeleton.parents == m.skeleton.parents
    np.testing.assert_array_equal(back.skeleton.offsets, m.skeleton.offsets)
    np.testing.assert_array_equal(back.root_translation, m.root_translation)
    np.testing.assert_array_equal(back.rotations, m.rotations)


def test_load_bad_files_are_user_errors(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(UserError, match="junk.npz"):
        Motion.load(junk)
    with pytest.raises(UserError, match="missing.npz"):
        Motion.load(tmp_path / "missing.npz")
    m = random_motion()
    m.rotations[3, 4, 0] = np.nan
    m.save(tmp_path / "nan.npz")
    with pytest.raises(UserError, match="NaN"):
        Motion.load(tmp_path / "nan.npz")


def test_slicing_and_duration():
    m = random_motion(frames=30, fps=15)
    assert len(m) == 30 and m.duration == pytest.approx(2.0)
    part = m[10:20]
    assert part.num_frames == 10 and part.fps == 15 and part.skeleton is m.skeleton
    np.testing.assert_array_equal(part.rotations, m.rotations[10:20])
    np.testing.assert_allclose(part.positions(), m.positions()[10:20], atol=1e-6)
    assert m[::2].num_frames == 15
    with pytest.raises(TypeError):
        m[3]


def test_shape_and_fps_validation():
    sk = smpl_skeleton()
    with pytest.raises(ValueError, match="shapes"):
        Motion(30, sk, np.zeros((5, 3)), np.zeros((5, 23, 3)))
    with pytest.raises(ValueError, match="shapes"):
        Motion(30, sk, np.zeros((4, 3)), np.zeros((5, 24, 3)))
    with pytest.raises(ValueError, match="shapes"):
        Motion(30, sk, np.zeros((5, 2)), np.zeros((5, 24, 3)))
    with pytest.raises(ValueError, match="fps"):
        Motion(0, sk, np.zeros((5, 3)), np.zeros((5, 24, 3)))


def test_skeleton_validation():
    with pytest.raises(ValueError):
        Skeleton(("a", "b"), (-1, 0), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        Skeleton(("a", "b"), (1, -1), np.zeros((2, 3)))  # parent after child
    sk = smpl_skeleton()
    assert Skeleton.from_dict(sk.to_dict()).same_topology(sk)


def test_resample_keeps_shared_frames_and_round_trips():
    rng = np.random.default_rng(0)
    t = np.arange(100) / 25
    rot = 0.5 * np.sin(2 * t[:, None, None] + rng.uniform(0, 6, (1, 24, 3)))
    m = Motion(25, smpl_skeleton(), np.c_[np.sin(t), np.ones(100), t], rot)
    assert np.abs(m.resample(50).positions()[::2] - m.positions()).max() < 1e-6
    up = m.resample(60)
    assert up.fps == 60 and up.num_frames == 238  # frames k/60 within the 3.96 s span
    back = up.resample(25)
    assert np.abs(back.positions() - m.positions()[: back.num_frames]).max() < 2e-3


def _floating(frames: int = 200, fps: float = 25.0) -> tuple[Motion, np.ndarray]:
    """A rest pose whose root height drifts slowly by ±5 cm and lifts 3 cm for 4 frames at frame 100."""
    skeleton = smpl_skeleton()
    t = np.arange(frames) / fps
    drift = 0.05 * np.sin(2 * np.pi * 0.3 * t)
    lift = np.where((np.arange(frames) >= 100) & (np.arange(frames) < 104), 0.03, 0.0)
    root = np.zeros((frames, 3), np.float32)
    rest = Motion(fps, skeleton, root[:1], np.zeros((1, 24, 3), np.float32)).positions()[0]
    rest_floor = -rest[[7, 8, 10, 11], 1].min()
    root[:, 1] = rest_floor + drift + lift
    root[:, 0] = t  # walking along x, which grounding leaves alone
    return Motion(fps, skeleton, root, np.zeros((frames, 24, 3), np.float32)), lift


def test_grounded_puts_the_lowest_foot_on_the_floor_frame_by_frame():
    from dancegen.motion.filters import grounded

    motion, _ = _floating()
    out = grounded(motion, 0.0)
    lowest = out.positions()[:, [7, 8, 10, 11], 1].min(1)
    assert np.abs(lowest).max() < 1e-5
    np.testing.assert_array_equal(out.rotations, motion.rotations)
    np.testing.assert_array_equal(out.root_translation[:, [0, 2]], motion.root_translation[:, [0, 2]])
    raised = grounded(motion, 0.0, floor=0.02)
    assert np.abs(raised.positions()[:, [7, 8, 10, 11], 1].min(1) - 0.02).max() < 1e-5


def test_grounded_with_a_sigma_removes_slow_drift_and_keeps_short_lifts():
    from dancegen.motion.filters import grounded

    motion, lift = _floating()
    lowest = grounded(motion, 0.4).positions()[:, [7, 8, 10, 11], 1].min(1)
    before = motion.positions()[:, [7, 8, 10, 11], 1].min(1)
    assert np.abs(before).max() > 0.04  # the drift: the feet float and sink by up to 5 cm
    quiet = lift == 0
    assert np.abs(lowest[quiet][20:-20]).max() < 0.015  # slow drift gone (edges aside)
    assert lowest[101] - np.median(lowest[90:100]) > 0.02  # the 3-cm lift mostly kept


def test_grounded_needs_a_foot_in_the_skeleton():
    from dancegen.motion.filters import grounded

    skeleton = Skeleton(("hips", "head"), (-1, 0), np.array([[0, 0, 0], [0, 0.5, 0]], np.float32))
    motion = Motion(25.0, skeleton, np.zeros((3, 3)), np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="no joint of the skeleton is named like a foot"):
        grounded(motion, 0.1)


def test_at_times_slerps_like_scipy_at_any_times():
    from scipy.spatial.transform import Rotation, Slerp

    rng = np.random.default_rng(3)
    m = Motion(25.0, smpl_skeleton(), rng.normal(size=(40, 3)), np.cumsum(rng.normal(0, 0.4, (40, 24, 3)), 0))
    times = np.sort(rng.uniform(-0.1, 40 / 25, 77))  # a few outside the span: clipped to it
    out = m.at_times(times, 60.0)
    t = np.arange(40) / 25.0
    inside = np.clip(times, 0, t[-1])
    expected = np.stack([Slerp(t, Rotation.from_rotvec(m.rotations[:, j]))(inside).as_matrix() for j in range(24)], 1)
    got = Rotation.from_rotvec(out.rotations.reshape(-1, 3)).as_matrix().reshape(expected.shape)
    assert out.fps == 60.0 and out.num_frames == 77 and np.abs(got - expected).max() < 1e-5
    root = np.stack([np.interp(inside, t, m.root_translation[:, i]) for i in range(3)], 1)
    assert np.abs(out.root_translation - root).max() < 1e-5


def _swinging(frames: int = 300, fps: float = 25.0, period: float = 0.6, lag: float = 0.113) -> Motion:
    """Both arms swinging with `period` s: joint speed is lowest at the turns, every period / 2 s from `lag`."""
    t = np.arange(frames) / fps
    rotations = np.zeros((frames, 24, 3), np.float32)
    swing = 0.8 * np.cos(2 * np.pi * (t - lag) / period)
    for shoulder in (16, 17):
        rotations[:, shoulder, 2] = swing
    for knee in (4, 5):
        rotations[:, knee, 0] = 0.3 * swing
    return Motion(fps, smpl_skeleton(), np.tile([0.0, 0.95, 0.0], (frames, 1)), rotations)


def test_kinematic_beats_are_the_beat_alignment_scores_motion_beats():
    from dancegen.metrics.beats import motion_beats
    from dancegen.motion.filters import kinematic_beats

    m = _swinging()
    beats = kinematic_beats(m)
    reference = motion_beats(m.resample(60.0).positions(), "bailando") / 60.0
    end = (m.num_frames - 1) / m.fps

    def inner(b: np.ndarray) -> np.ndarray:  # 20 frames from either end the smoothing differs: scipy's
        return b[(b > 20 / 60) & (b < end - 20 / 60)]  # reflects the speeds, gaussian_smooth repeats the last

    assert len(beats) > 15 and np.array_equal(inner(beats), inner(reference))
    assert np.abs((beats - 0.113) / 0.3 - np.round((beats - 0.113) / 0.3)).max() < 0.1  # at the turns


def test_on_beats_moves_the_motions_beats_onto_the_music_within_its_bounds():
    from dancegen.metrics.beats import beat_align_score
    from dancegen.motion.filters import kinematic_beats, on_beats

    m = _swinging()  # turns at 0.113 + 0.3 k s
    music = 0.263 + 0.3 * np.arange(40)  # beats 0.15 s after each turn
    out = on_beats(m, music, max_shift=0.3, max_stretch=1.5)
    assert out.num_frames == m.num_frames and out.fps == m.fps
    np.testing.assert_allclose(out.rotations[[0, -1]], m.rotations[[0, -1]], atol=1e-5)
    moved = kinematic_beats(out)
    inner = moved[(moved > 0.7) & (moved < 11.0)]  # the first and last stretches, to the fixed ends, aside
    assert np.abs(inner[:, None] - music[None]).min(1).max() < 1.5 / 60  # on the music's beats now
    before = beat_align_score(m.resample(60.0).positions(), np.round(music * 60).astype(int))
    after = beat_align_score(out.resample(60.0).positions(), np.round(music * 60).astype(int))
    assert after > before + 0.3
    # beats further than max_shift, or a stretch past max_stretch, leave the motion as it was
    assert np.array_equal(on_beats(m, music, max_shift=0.1).rotations, m.at_times(np.arange(300) / 25.0).rotations)
    shifted = on_beats(m, music, max_shift=0.3, max_stretch=1.01)
    assert np.abs(shifted.rotations - m.rotations).max() < 1e-4
    assert on_beats(m, np.zeros(0)) is m
