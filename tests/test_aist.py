"""AIST++ loader, on small files in the AIST++ format that the tests write (the dataset is not here)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dancegen.datasets import aist
from dancegen.datasets import detect_kind, open_dataset
from dancegen.datasets.safe_pickle import load_array_pickle
from dancegen.errors import UserError
from dancegen.motion import SMPL_OFFSETS, SMPL_PARENTS, smpl_skeleton

BREAK = "gBR_sBM_cAll_d04_mBR0_ch01"
POP = "gPO_sBM_cAll_d10_mPO1_ch02"
IGNORED = "gKR_sBM_cAll_d28_mKR2_ch01"


def aist_dict(frames: int, seed: int, scale: float = 93.77886) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "smpl_loss": 1.59,
        "smpl_poses": rng.normal(0, 0.4, (frames, 72)).astype(np.float32),
        "smpl_trans": (rng.normal(0, 30, (frames, 3)) + [0, 90, 0]).astype(np.float32),
        "smpl_scaling": np.array([scale], dtype=np.float32),
    }


def write_pickle(path: Path, obj, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def write_sine(path: Path, seconds: float = 0.5, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Two short sequences with their music, an ignored third one and the split files."""
    r = tmp_path / "aist"
    write_pickle(r / "motions" / f"{BREAK}.pkl", aist_dict(12, 0))
    write_pickle(r / "motions" / f"{POP}.pkl", aist_dict(7, 1, scale=101.5))
    write_pickle(r / "motions" / f"{IGNORED}.pkl", aist_dict(5, 2))
    write_sine(r / "wav" / "mBR0.wav")
    write_sine(r / "wav" / "mPO1.wav")
    (r / "ignore_list.txt").write_text(f"{IGNORED}\n")
    (r / "splits").mkdir()
    (r / "splits" / "crossmodal_train.txt").write_text(f"{BREAK}\n{IGNORED}\n")
    (r / "splits" / "crossmodal_test.txt").write_text(f"{POP}\n")
    return r


def numpy_fk(poses: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Joint positions by a plain numpy FK with Rodrigues' formula, independent of torch and roma."""
    t = len(poses)
    aa = poses.reshape(t, 24, 3).astype(np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = np.where(angle > 1e-12, aa / np.maximum(angle, 1e-12), 0.0)
    k = np.zeros((t, 24, 3, 3))
    k[..., 0, 1], k[..., 0, 2] = -axis[..., 2], axis[..., 1]
    k[..., 1, 0], k[..., 1, 2] = axis[..., 2], -axis[..., 0]
    k[..., 2, 0], k[..., 2, 1] = -axis[..., 1], axis[..., 0]
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    rot = np.eye(3) + s * k + (1 - c) * (k @ k)
    world_r = np.zeros_like(rot)
    pos = np.zeros((t, 24, 3))
    for j, p in enumerate(SMPL_PARENTS):
        if p < 0:
            world_r[:, j], pos[:, j] = rot[:, j], root
        else:
            world_r[:, j] = world_r[:, p] @ rot[:, j]
            pos[:, j] = pos[:, p] + np.einsum("tab,b->ta", world_r[:, p], SMPL_OFFSETS[j].astype(np.float64))
    return pos


def test_open_lists_styles_and_songs(root: Path):
    assert aist.detect(root)
    assert detect_kind(root) == "aist"
    ds = open_dataset("aist", root)
    assert ds.kind == "aist"
    assert ds.names == [BREAK, POP]  # the ignored take is left out
    assert ds.styles == {BREAK: "break", POP: "pop"}
    seq = ds.load(BREAK)
    assert seq.song == root / "wav" / "mBR0.wav" and seq.offset == 0.0 and seq.style == "break"
    assert ds.load(POP).song == root / "wav" / "mPO1.wav"


def test_motion_conversion(root: Path):
    raw = aist_dict(12, 0)
    motion = aist.load_motion(root / "motions" / f"{BREAK}.pkl")
    assert motion.fps == 60.0 and motion.num_frames == 12
    assert motion.skeleton.same_topology(smpl_skeleton())
    np.testing.assert_allclose(motion.skeleton.offsets, SMPL_OFFSETS)
    np.testing.assert_allclose(motion.rotations, raw["smpl_poses"].reshape(12, 24, 3), atol=1e-7)
    np.testing.assert_allclose(motion.root_translation, raw["smpl_trans"] / raw["smpl_scaling"][0], rtol=1e-6)


def test_positions_match_independent_numpy_fk(root: Path):
    raw = aist_dict(12, 0)
    motion = aist.load_motion(root / "motions" / f"{BREAK}.pkl")
    expected = numpy_fk(raw["smpl_poses"], raw["smpl_trans"].astype(np.float64) / float(raw["smpl_scaling"][0]))
    np.testing.assert_allclose(motion.positions(), expected, atol=2e-5)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_loads(tmp_path: Path, protocol: int):
    raw = aist_dict(4, 3)
    raw["smpl_loss"] = np.float32(1.5)  # a numpy scalar, as some writers leave it
    raw["smpl_trans"] = raw["smpl_trans"].astype(np.float64)
    path = write_pickle(tmp_path / f"{BREAK}.pkl", raw, protocol=protocol)
    data = load_array_pickle(path)
    assert set(data) == set(raw)
    for key in ("smpl_poses", "smpl_trans", "smpl_scaling"):
        assert data[key].dtype == raw[key].dtype
        np.testing.assert_array_equal(data[key], raw[key])
    motion = aist.load_motion(path)
    np.testing.assert_allclose(motion.root_translation, raw["smpl_trans"] / raw["smpl_scaling"][0], rtol=1e-6)


class _RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload", ["system", "eval", "class"])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, payload: str):
    marker = tmp_path / "pwned"
    raw = aist_dict(3, 0)
    raw["smpl_loss"] = {"system": _RunsCommand(marker), "eval": _Evaluates(), "class": _RunsCommand}[payload]
    path = write_pickle(tmp_path / f"{BREAK}.pkl", raw)
    with pytest.raises(UserError) as err:
        aist.load_motion(path)
    assert err.value.path == str(path)
    assert "refusing" in err.value.problem
    assert {"system": "system", "eval": "builtins.eval", "class": "_RunsCommand"}[payload] in err.value.problem
    assert not marker.exists()


def test_array_of_another_type_is_refused(tmp_path: Path):
    raw = aist_dict(3, 0)
    raw["smpl_poses"] = np.ma.masked_array(raw["smpl_poses"])  # an ndarray subclass: not plain data
    with pytest.raises(UserError, match="refusing"):
        aist.load_motion(write_pickle(tmp_path / f"{BREAK}.pkl", raw))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(smpl_poses=d["smpl_poses"][:, :71]), "smpl_poses has shape"),
        (lambda d: d.update(smpl_poses=d["smpl_poses"][:0]), "smpl_poses has shape"),
        (lambda d: d.update(smpl_trans=d["smpl_trans"][:-1]), "smpl_trans has shape"),
        (lambda d: d.update(smpl_scaling=np.array([1.0, 2.0])), "smpl_scaling has shape"),
        (lambda d: d.update(smpl_scaling=np.array([0.0])), "positive"),
        (lambda d: d.pop("smpl_trans"), "missing smpl_trans"),
        (lambda d: d.update(smpl_poses=np.array(["a"] * 72)), "not numeric"),
        (lambda d: d["smpl_poses"].__setitem__((1, 5), np.nan), "smpl_poses holds NaN"),
        (lambda d: d["smpl_trans"].__setitem__((0, 0), np.inf), "smpl_trans holds NaN"),
    ],
)
def test_bad_motion_files(tmp_path: Path, change, message: str):
    raw = aist_dict(6, 0)
    change(raw)
    path = write_pickle(tmp_path / f"{BREAK}.pkl", raw)
    with pytest.raises(UserError, match=message) as err:
        aist.load_motion(path)
    assert err.value.path == str(path)


def test_not_a_dict_empty_and_truncated(tmp_path: Path):
    listed = write_pickle(tmp_path / "list.pkl", [1, 2, 3])
    with pytest.raises(UserError, match="expected a dict"):
        aist.load_motion(listed)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        aist.load_motion(empty)
    good = write_pickle(tmp_path / "good.pkl", aist_dict(6, 0)).read_bytes()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="not a readable pickle") as err:
        aist.load_motion(cut)
    assert err.value.path == str(cut)
    text = tmp_path / "text.pkl"
    text.write_text("smpl_poses, smpl_trans\n")
    with pytest.raises(UserError):
        aist.load_motion(text)


def test_missing_wav_names_the_file(root: Path):
    (root / "wav" / "mPO1.wav").unlink()
    with pytest.raises(UserError, match="no such file") as err:
        open_dataset("aist", root)
    assert err.value.path == str(root / "wav" / "mPO1.wav")


def test_missing_music_folder(root: Path):
    for p in (root / "wav").iterdir():
        p.unlink()
    (root / "wav").rmdir()
    with pytest.raises(UserError, match="wav/<music id>.wav"):
        open_dataset("aist", root)


def test_wav_named_after_the_sequence(tmp_path: Path):
    """EDGE's copies: wavs/<sequence>.wav."""
    r = tmp_path / "edge"
    write_pickle(r / "motions" / f"{BREAK}.pkl", aist_dict(4, 0))
    write_sine(r / "wavs" / f"{BREAK}.wav")
    assert open_dataset("aist", r).load(BREAK).song == r / "wavs" / f"{BREAK}.wav"


def test_splits_leave_out_ignored(root: Path):
    assert aist.read_splits(root) == {"train": [BREAK], "test": [POP]}
    assert aist.read_splits(root / "nowhere") == {}


def test_name_parsing():
    assert aist.parse_name("gWA_sFM_cAll_d27_mWA5_ch20") == ("gWA", "mWA5")
    assert aist.parse_name("not_an_aist_name") == (None, None)
    assert aist.style_of("gJB_sBM_cAll_d09_mJB1_ch02") == "ballet jazz"
    assert set(aist.GENRES) == {"gBR", "gPO", "gLO", "gMH", "gLH", "gHO", "gWA", "gKR", "gJS", "gJB"}


def test_folder_without_motions(tmp_path: Path):
    assert not aist.detect(tmp_path)
    with pytest.raises(UserError, match="motions"):
        open_dataset("aist", tmp_path)


class _HugeArray:
    def __reduce__(self):
        return (np.ndarray.__reduce__(np.zeros(1))[0], (np.ndarray, (10**12,), b"b"))


def test_absurd_array_placeholder_is_refused(tmp_path: Path):
    raw = aist_dict(3, 0)
    raw["smpl_loss"] = _HugeArray()
    with pytest.raises(UserError, match="placeholder shape"):
        aist.load_motion(write_pickle(tmp_path / f"{BREAK}.pkl", raw))
