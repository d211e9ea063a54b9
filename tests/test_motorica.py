"""Motorica loader: small takes and a joblib pipeline file that the tests write, and the real folder."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dancegen.datasets import motorica
from dancegen.datasets import detect_kind, open_dataset
from dancegen.datasets.safe_pickle import Inert, find_inert, load_inert_joblib
from dancegen.errors import UserError

joblib = pytest.importorskip("joblib")

TAKE = "kthstreet_gKR_sFM_cAll_d01_mKR_ch01_testsong_001_00"
TAKE2 = "kthjazz_gCH_sFM_cAll_d02_mCH_ch01_othersong_003_01"
FRAMES = 20
ROT_JOINTS = ["Hips", "Spine", "Neck", "Head", "LeftUpLeg", "LeftLeg", "LeftFoot", "RightUpLeg", "RightLeg", "RightFoot"]
KEPT = ["Hips", "Spine", "Neck", "Head", "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase",
        "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase"]


def joint(parent, offsets, children, channels=3):
    chans = ["Zrotation", "Xrotation", "Yrotation"] if channels else []
    return {"parent": parent, "channels": chans, "offsets": list(offsets), "order": "ZXY" if channels else "",
            "children": children}


# A small pymo skeleton in centimetres, with end sites and fingers the data does not rotate.
SKELETON_CM = {
    "Hips": {**joint(None, [1.8, 93.0, -40.4], ["Spine", "LeftUpLeg", "RightUpLeg"]),
             "channels": ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]},
    "Spine": joint("Hips", [0, 20, 0], ["Neck", "LeftHand"]),
    "Neck": joint("Spine", [0, 30, 0], ["Head"]),
    "Head": joint("Neck", [0, 15, 2], ["Head_Nub"]),
    "Head_Nub": joint("Head", [0, 0, 0], [], channels=0),
    "LeftHand": joint("Spine", [30, 20, 0], ["LeftHandIndex1"]),
    "LeftHandIndex1": joint("LeftHand", [3, 0, 0], []),
    "LeftUpLeg": joint("Hips", [9.5, 0, 0], ["LeftLeg"]),
    "LeftLeg": joint("LeftUpLeg", [0, -36, 0], ["LeftFoot"]),
    "LeftFoot": joint("LeftLeg", [0, -41, 0], ["LeftToeBase"]),
    "LeftToeBase": joint("LeftFoot", [0, -6, 14], ["LeftToeBase_Nub"]),
    "LeftToeBase_Nub": joint("LeftToeBase", [0, 0, 0], [], channels=0),
    "RightUpLeg": joint("Hips", [-9.5, 0, 0], ["RightLeg"]),
    "RightLeg": joint("RightUpLeg", [0, -36, 0], ["RightFoot"]),
    "RightFoot": joint("RightLeg", [0, -41, 0], ["RightToeBase"]),
    "RightToeBase": joint("RightFoot", [0, -6, 14], ["RightToeBase_Nub"]),
    "RightToeBase_Nub": joint("RightToeBase", [0, 0, 0], [], channels=0),
}


def motion_columns() -> list[str]:
    cols = [f"{j}_{a}" for j in reversed(ROT_JOINTS) for a in ("alpha", "beta", "gamma")]
    return cols + list(motorica.ROOT_COLUMNS)


AUDIO_COLUMNS = [f"MFCC_{i}" for i in range(20)] + [f"Chroma_{i}" for i in range(6)] + [
    "Spectralflux_0", "Beatactivation_0", "Beat_0"]


def take_arrays(seed: int, frames: int = FRAMES) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = motion_columns()
    motion = np.zeros((frames, len(cols)), np.float32)
    motion[:, : 3 * len(ROT_JOINTS)] = rng.normal(0, 0.3, (frames, 3 * len(ROT_JOINTS)))
    motion[:, cols.index("Hips_Yposition")] = 85 + rng.normal(0, 2, frames)
    motion[:, cols.index("reference_dXposition")] = 0.5 + rng.normal(0, 0.2, frames)
    motion[:, cols.index("reference_dZposition")] = 2.0 + rng.normal(0, 0.2, frames)
    motion[:, cols.index("reference_dYrotation")] = 0.05 + rng.normal(0, 0.02, frames)
    times = np.arange(frames) / 30.0
    return {
        "motion": motion, "motion_columns": np.array(cols), "motion_time_s": times,
        "audio_feats": rng.normal(0, 1, (frames, 29)).astype(np.float32),
        "audio_columns": np.array(AUDIO_COLUMNS), "audio_time_s": times, "fps": np.int64(30),
    }


def write_take(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.fixture
def fake_pymo(monkeypatch, tmp_path: Path):
    """Classes that pickle under pymo's names and that leave a marker if anything runs their code."""
    marker = tmp_path / "pymo_code_ran"

    def ran(self, *args, **kwargs):
        marker.touch()

    module = types.ModuleType("pymo.preprocessing")
    for name in ("JointSelector", "RootTransformer", "Numpyfier"):
        cls = type(name, (), {"__module__": "pymo.preprocessing", "__setstate__": ran})
        setattr(module, name, cls)
    package = types.ModuleType("pymo")
    package.preprocessing = module
    monkeypatch.setitem(sys.modules, "pymo", package)
    monkeypatch.setitem(sys.modules, "pymo.preprocessing", module)
    return module, marker


def write_pipeline(path: Path, module, skeleton=SKELETON_CM, **joblib_kwargs) -> Path:
    """A joblib file shaped like LDA's data_pipe.expmap_30fps.sav (steps of pymo objects)."""
    selector = module.JointSelector.__new__(module.JointSelector)
    selector.__dict__.update(
        joints=ROT_JOINTS[1:], include_root=True, orig_skeleton=skeleton,
        not_selected=np.array(["LeftHandIndex1_Xrotation"], dtype=object),  # a joblib object array
        not_selected_values={"LeftHandIndex1_Xrotation": np.float64(-8.2e-06)},
    )
    root = module.RootTransformer.__new__(module.RootTransformer)
    root.__dict__.update(method="pos_rot_deltas", hips_side_axis=np.array([-1.0, 0.0, 0.0]))
    npy = module.Numpyfier.__new__(module.Numpyfier)
    npy.__dict__.update(org_means=np.arange(12, dtype=np.float32).reshape(3, 4).T)  # a Fortran-order array
    joblib.dump({"steps": [("jtsel", selector), ("root", root), ("npy", npy)]}, path, **joblib_kwargs)
    return path


@pytest.fixture
def root(tmp_path: Path, fake_pymo) -> Path:
    module, _ = fake_pymo
    r = tmp_path / "motorica"
    r.mkdir()
    write_pipeline(r / "data_pipe.expmap_30fps.sav", module)
    write_take(r / f"{TAKE}.npz", take_arrays(0))
    write_take(r / f"{TAKE2}.npz", take_arrays(1, frames=9))
    return r


def test_pipeline_is_read_without_running_its_classes(root: Path, fake_pymo):
    _, marker = fake_pymo
    tree = load_inert_joblib(root / "data_pipe.expmap_30fps.sav")
    (selector,) = find_inert(tree, "pymo.preprocessing.JointSelector")
    assert isinstance(selector, Inert) and selector.state["orig_skeleton"] == SKELETON_CM
    assert list(selector.state["not_selected"]) == ["LeftHandIndex1_Xrotation"]
    (npy,) = find_inert(tree, "pymo.preprocessing.Numpyfier")
    np.testing.assert_array_equal(npy.state["org_means"], np.arange(12, dtype=np.float32).reshape(3, 4).T)
    assert not marker.exists()


def test_skeleton_from_pipeline(root: Path):
    skeleton = motorica.read_pipeline_skeleton(root / "data_pipe.expmap_30fps.sav", ROT_JOINTS)
    assert list(skeleton.names) == KEPT
    assert [skeleton.names[p] if p >= 0 else None for p in skeleton.parents] == [
        SKELETON_CM[j]["parent"] for j in KEPT]
    expected = np.array([[0, 0, 0]] + [SKELETON_CM[j]["offsets"] for j in KEPT[1:]]) / 100.0
    np.testing.assert_allclose(skeleton.offsets, expected, atol=1e-7)


def test_open_and_load(root: Path, fake_pymo):
    _, marker = fake_pymo
    assert motorica.detect(root)
    assert detect_kind(root) == "motorica"
    ds = open_dataset("motorica", root)
    assert ds.kind == "motorica" and ds.names == sorted([TAKE, TAKE2])
    assert ds.styles == {TAKE: "krump", TAKE2: "charleston"}
    seq = ds.load(TAKE)
    arrays = take_arrays(0)
    assert seq.song is None and seq.offset == 0.0 and seq.style == "krump"
    assert seq.motion.fps == 30.0 and seq.motion.num_frames == FRAMES
    assert set(seq.features) == {"motorica_expmap61", "motorica_audio29"}
    np.testing.assert_array_equal(seq.features["motorica_expmap61"], arrays["motion"])
    np.testing.assert_array_equal(seq.features["motorica_audio29"], arrays["audio_feats"])
    assert all(len(f) == seq.motion.num_frames for f in seq.features.values())
    assert len(ds.load(TAKE2).motion) == 9
    assert not marker.exists()


def test_motion_rebuilt_as_pymo_inverts_it(root: Path):
    """Root integration and hips rotation against a re-implementation of pymo's inverse_transform loop."""
    seq = open_dataset("motorica", root).load(TAKE)
    a = take_arrays(0)
    cols = list(a["motion_columns"])
    col = lambda name: a["motion"][:, cols.index(name)].astype(np.float64)  # noqa: E731
    dx, dz, dry = col("reference_dXposition"), col("reference_dZposition"), col("reference_dYrotation")
    heading = [Rotation.identity()]
    x, z = [0.0], [0.0]
    for i in range(FRAMES - 1):
        heading.append(Rotation.from_rotvec([0.0, dry[i + 1], 0.0]) * heading[i])
        step = heading[i + 1].apply([dx[i + 1], 0.0, dz[i + 1]])
        x.append(x[i] + step[0])
        z.append(z[i] + step[2])
    expected_root = np.stack([x, col("Hips_Yposition"), z], -1) / 100.0
    np.testing.assert_allclose(seq.motion.root_translation, expected_root, atol=1e-5)

    hips_local = np.stack([col(f"Hips_{k}") for k in ("alpha", "beta", "gamma")], -1)
    for t in range(FRAMES):
        expected = (heading[t] * Rotation.from_rotvec(hips_local[t])).as_matrix()
        np.testing.assert_allclose(Rotation.from_rotvec(seq.motion.rotations[t, 0]).as_matrix(), expected, atol=1e-5)
    names = seq.motion.skeleton.names
    for j in ROT_JOINTS[1:]:
        local = np.stack([col(f"{j}_{k}") for k in ("alpha", "beta", "gamma")], -1)
        np.testing.assert_allclose(seq.motion.rotations[:, names.index(j)], local, atol=1e-6)
    assert not seq.motion.rotations[:, names.index("LeftToeBase")].any()


def test_missing_pipeline_file(root: Path):
    (root / "data_pipe.expmap_30fps.sav").unlink()
    assert not motorica.detect(root)
    with pytest.raises(UserError, match="skeleton comes from it") as err:
        open_dataset("motorica", root)
    assert err.value.path == str(root / "data_pipe.expmap_30fps.sav")


def test_compressed_or_malicious_pipeline(tmp_path: Path, fake_pymo):
    module, _ = fake_pymo
    packed = write_pipeline(tmp_path / "packed.sav", module, compress=3)
    with pytest.raises(UserError, match="not an uncompressed"):
        load_inert_joblib(packed)

    marker = tmp_path / "pwned"

    class RunsCommand:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil"
    evil.mkdir()
    joblib.dump({"steps": [("x", RunsCommand())]}, evil / "data_pipe.expmap_30fps.sav")
    tree = load_inert_joblib(evil / "data_pipe.expmap_30fps.sav")
    (call,) = find_inert(tree, f"{os.system.__module__}.system")
    assert call.args == (f"touch {marker}",)  # recorded, never run
    write_take(evil / f"{TAKE}.npz", take_arrays(0))
    with pytest.raises(UserError, match="holds no pymo skeleton"):
        open_dataset("motorica", evil).load(TAKE)
    assert not marker.exists()


def test_skeleton_missing_a_rotated_joint(tmp_path: Path, fake_pymo):
    module, _ = fake_pymo
    r = tmp_path / "m"
    r.mkdir()
    skeleton = {k: v for k, v in SKELETON_CM.items() if k != "Head"}
    skeleton["Neck"] = {**skeleton["Neck"], "children": []}
    write_pipeline(r / "data_pipe.expmap_30fps.sav", module, skeleton=skeleton)
    write_take(r / f"{TAKE}.npz", take_arrays(0))
    with pytest.raises(UserError, match="lacks joints the motion has: Head"):
        open_dataset("motorica", r).load(TAKE)


def test_malformed_skeleton(tmp_path: Path, fake_pymo):
    module, _ = fake_pymo
    r = tmp_path / "m"
    r.mkdir()
    skeleton = {**SKELETON_CM, "Spine": {**SKELETON_CM["Spine"], "offsets": ["a", "b", "c"]}}
    write_pipeline(r / "data_pipe.expmap_30fps.sav", module, skeleton=skeleton)
    write_take(r / f"{TAKE}.npz", take_arrays(0))
    with pytest.raises(UserError, match="malformed"):
        open_dataset("motorica", r).load(TAKE)


def _broken(change):
    a = take_arrays(0)
    change(a)
    return a


@pytest.mark.parametrize(
    "arrays, message",
    [
        (_broken(lambda a: a["motion"].__setitem__((3, 2), np.nan)), "motion holds NaN"),
        (_broken(lambda a: a["audio_feats"].__setitem__((0, 0), np.inf)), "audio_feats holds NaN"),
        (_broken(lambda a: a.update(audio_feats=a["audio_feats"][:-1])), "not frame-aligned"),
        (_broken(lambda a: a.update(motion_columns=a["motion_columns"][:-1])), "motion_columns names"),
        (_broken(lambda a: a.update(motion=a["motion"][:, 0])), "motion has shape"),
        (_broken(lambda a: a.pop("audio_feats")), "missing audio_feats"),
        (_broken(lambda a: [a.pop("fps"), a.pop("motion_time_s")]), "frame rate is unknown"),
        (_broken(lambda a: a.update(motion_columns=np.array(
            [c.replace("reference_dYrotation", "other") for c in a["motion_columns"]]))), "lack reference_dYrotation"),
        (_broken(lambda a: a.update(motion_columns=np.array(
            [c.replace("Hips_gamma", "Hips_other") for c in a["motion_columns"]]))), "exp map of Hips"),
    ],
)
def test_bad_takes(root: Path, arrays, message: str):
    path = write_take(root / f"{TAKE}.npz", arrays)
    with pytest.raises(UserError, match=message) as err:
        open_dataset("motorica", root).load(TAKE)
    assert err.value.path in (str(path), str(root / "data_pipe.expmap_30fps.sav"))


def test_object_arrays_are_not_unpickled(root: Path):
    a = take_arrays(0)
    a["motion_columns"] = a["motion_columns"].astype(object)  # needs pickle to load
    write_take(root / f"{TAKE}.npz", a)
    with pytest.raises(UserError, match="not a readable npz"):
        open_dataset("motorica", root).load(TAKE)


def test_fps_from_times_when_absent(root: Path):
    a = take_arrays(0)
    del a["fps"]
    write_take(root / f"{TAKE}.npz", a)
    assert open_dataset("motorica", root).load(TAKE).motion.fps == pytest.approx(30.0)


# --- the real data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_take(shared_data: Path):
    ds = open_dataset("motorica", shared_data / "motorica_lda")
    name = min(ds.names, key=lambda n: (shared_data / "motorica_lda" / f"{n}.npz").stat().st_size)
    return ds, ds.load(name)


def test_real_folder(real_take, shared_data: Path):
    ds, seq = real_take
    assert detect_kind(shared_data / "motorica_lda") == "motorica"
    assert len(ds) == 10
    assert set(ds.styles.values()) == {"krump", "hip-hop", "locking", "popping"}
    assert all(n.endswith(("_00", "_01")) for n in ds.names)
    m = seq.motion
    assert m.fps == 30.0
    assert seq.features["motorica_expmap61"].shape == (m.num_frames, 61)
    assert seq.features["motorica_audio29"].shape == (m.num_frames, 29)
    assert m.num_frames > 3000  # about two minutes at 30 fps
    assert m.skeleton.num_joints == 21 and m.skeleton.names[0] == "Hips"
    assert {"LeftToeBase", "RightToeBase", "Head", "LeftHand", "RightHand"} <= set(m.skeleton.names)


def test_real_motion_is_a_plausible_human(real_take):
    _, seq = real_take
    m = seq.motion[:900]  # 30 s keep the check quick
    sk = m.skeleton
    rest = sk.rest_positions()
    assert 1.5 <= rest[:, 1].max() - rest[:, 1].min() <= 2.0  # metres, rest pose, toes to head joint
    pos = m.positions()
    feet = [sk.index(n) for n in ("LeftFoot", "RightFoot", "LeftToeBase", "RightToeBase")]
    lowest = pos[:, feet, 1].min(axis=1)
    assert -0.05 < lowest.mean() < 0.15  # feet near the floor on average
    head, hips = pos[:, sk.index("Head"), 1], pos[:, sk.index("Hips"), 1]
    assert (head > hips).mean() > 0.95  # upright: Y is up
    left, right = rest[sk.index("LeftUpLeg")], rest[sk.index("RightUpLeg")]
    assert left[0] > 0 > right[0]  # the body's left on +X, like the canonical skeleton
    bones = np.linalg.norm(pos[:, 1:] - pos[:, list(sk.parents[1:])], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(sk.bone_lengths()[1:], bones.shape), atol=1e-4)


def test_real_heading_keeps_planted_feet_still(real_take, shared_data: Path):
    """With the heading integrated the right way round, feet on the floor barely slide; flipped, they skate."""
    _, seq = real_take
    frames = 900

    def slide(motion):
        pos = motion[:frames].positions()
        sk = motion.skeleton
        feet = pos[:, [sk.index("LeftToeBase"), sk.index("RightToeBase")]]
        speed = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=0), axis=-1) * motion.fps
        low = feet[1:, :, 1] < np.percentile(feet[..., 1], 20)
        return float(np.median(speed[low]))

    path = shared_data / "motorica_lda" / f"{seq.name}.npz"
    arrays = motorica.read_take(path)
    flipped = arrays["motion"].copy()
    flipped[:, list(arrays["motion_columns"]).index("reference_dYrotation")] *= -1
    wrong = motorica.take_to_motion(path, flipped, arrays["motion_columns"], 30.0, seq.motion.skeleton)
    assert slide(seq.motion) < 0.1 < slide(wrong)
