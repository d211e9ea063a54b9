"""Motorica dance, as published with "Listen, Denoise, Action!" (Alexanderson et al. 2023).

Layout: a folder of ``<take>.npz`` files (names like ``kthstreet_gKR_sFM_cAll_d01_mKR_ch01_..._00``;
``_00``/``_01`` are the two 30-fps phases of one 60-fps capture) and the upstream preprocessing
pipeline ``data_pipe.expmap_30fps.sav``. Each npz holds

- ``motion`` (T, 61) with names in ``motion_columns``: an exp map (``<Joint>_alpha/beta/gamma``,
  a rotation vector) for each of 19 joints, then ``Hips_Yposition`` and the root's motion as
  deltas (pymo's ``RootTransformer("pos_rot_deltas")``): ``reference_dXposition`` and
  ``reference_dZposition``, the ground-plane step since the previous frame expressed in the
  body's heading frame, and ``reference_dYrotation``, the heading change (radians about +Y).
  The ``Hips`` exp map is the hips rotation relative to that heading. Units: centimetres.
- ``audio_feats`` (T, 29), names in ``audio_columns``: 20 MFCC, 6 chroma, spectral flux, beat
  activation, beat marks; frame-aligned with the motion. There is no audio file.
- ``fps`` (30).

The sequence carries both arrays unchanged as its own modalities,
``features = {"motorica_expmap61": (T, 61), "motorica_audio29": (T, 29)}``, and a canonical
`Motion` rebuilt from them on Motorica's own skeleton:

- The skeleton (joint names, parents, offsets) lives only in the ``.sav`` file, a joblib pickle of
  scikit-learn/pymo objects. It is read with `safe_pickle.load_inert_joblib`, which never imports
  or calls the classes it names (each becomes an inert record of its state), and the skeleton
  dict pymo keeps (``JointSelector.orig_skeleton``) is picked out of the records. Offsets are
  converted from centimetres to metres; the skeleton is Y up, facing +Z, the body's left on +X,
  like the canonical one. Kept joints: the 19 with exp maps plus the two ``*ToeBase`` joints
  (their rotation is not in the data and stays identity; they only place the toes for contact).
- The root is integrated as pymo's ``inverse_transform`` does: heading
  theta_t = sum_{i=1..t} dYrotation_i (theta_0 = 0), ground position
  p_t = p_{t-1} + R_y(theta_t) (dX_t, 0, dZ_t) from the origin, height Hips_Yposition; the hips
  world rotation is R_y(theta_t) times the hips exp map. Each take therefore starts at the
  origin facing +Z. (LDA's pipeline has ``separate_root=True``, which puts the same transform
  on an extra ``reference`` joint above the hips; we compose it into the hips instead.) On the
  real takes, feet on the floor slide about 0.05 m/s with this heading and about 0.3 m/s with
  its sign flipped, a check the tests repeat.

Styles (genre codes of ``dance_styles.txt``) are in `STYLES`.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, require_file
from ..motion import Motion, Skeleton
from ..motion.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from .base import Dataset, Sequence, register
from .safe_pickle import Inert, load_inert_joblib

EXPMAP_FEATURE = "motorica_expmap61"
AUDIO_FEATURE = "motorica_audio29"
PIPELINE_GLOB = "data_pipe*.sav"

# Genre codes listed in dance_styles.txt, named as in the LDA paper's Motorica dance dataset.
STYLES: dict[str, str] = {
    "gCA": "casual",
    "gCH": "charleston",
    "gJZ": "jazz",
    "gKR": "krump",
    "gLH": "hip-hop",
    "gLO": "locking",
    "gPO": "popping",
    "gTP": "tap",
}

ROOT_COLUMNS = ("Hips_Yposition", "reference_dXposition", "reference_dZposition", "reference_dYrotation")
_GENRE = re.compile(r"(?:^|_)(g[A-Z]{2})(?:_|$)")


def style_of(name: str) -> str | None:
    m = _GENRE.search(name)
    return STYLES.get(m[1]) if m else None


# --- the skeleton, out of the pipeline file ------------------------------------------------


def _skeleton_dicts(tree) -> list[dict]:
    """Every dict in the inert tree that looks like a pymo skeleton (joint -> parent/offsets/children)."""

    def is_skeleton(d: dict) -> bool:
        return bool(d) and all(
            isinstance(k, str) and isinstance(v, dict) and {"parent", "offsets", "children"} <= v.keys()
            for k, v in d.items()
        )

    found: list[dict] = []
    seen: set[int] = set()
    stack = [tree]
    while stack:  # iterative: a crafted file may nest deeper than Python's recursion limit
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, Inert):
            stack += [x.args, x.state]
        elif isinstance(x, dict):
            if is_skeleton(x):
                found.append(x)
            else:
                stack += list(x.values())
        elif isinstance(x, (list, tuple)):
            stack += list(x)
    return found


def read_pipeline_skeleton(path: str | Path, joints: list[str] | None = None) -> Skeleton:
    """Motorica's skeleton from the upstream pipeline file, metres, without running its code.

    `joints`: the joints that have rotations in the data (from the npz column names); they and
    their ``*ToeBase`` children are kept, in the skeleton's own depth-first order. None keeps
    every joint except end sites (``*_Nub``).
    """
    path = Path(path)
    require_file(path)
    candidates = _skeleton_dicts(load_inert_joblib(path))
    if not candidates:
        raise UserError(path, "holds no pymo skeleton (joint names, parents and offsets)")
    full = max(candidates, key=len)
    roots = [j for j, v in full.items() if v["parent"] is None]
    if len(roots) != 1:
        raise UserError(path, f"its skeleton has {len(roots)} root joints, expected one")

    if joints is not None:
        unknown = [j for j in joints if j not in full]
        if unknown:
            raise UserError(path, f"its skeleton lacks joints the motion has: {', '.join(unknown)}")
        if roots[0] not in joints:
            raise UserError(path, f"the motion has no rotation for the root joint {roots[0]}")

    def keep(j: str) -> bool:
        if j.endswith("_Nub"):
            return False
        if joints is None or j in joints:
            return True
        return "ToeBase" in j and full[j]["parent"] in joints

    names: list[str] = []
    parents: list[int] = []
    offsets: list[np.ndarray] = []

    def visit(j: str, parent_index: int) -> None:
        if j in names:
            raise UserError(path, f"its skeleton lists joint {j} twice in the tree")
        if not keep(j):
            if any(keep(d) for d in _descendants(full, j)):
                raise UserError(path, f"joint {j} has no rotation in the data but joints below it do")
            return
        index = len(names)
        names.append(j)
        parents.append(parent_index)
        offsets.append(np.zeros(3) if parent_index < 0 else np.asarray(full[j]["offsets"], dtype=np.float64).reshape(3))
        for c in full[j]["children"]:
            if c in full:
                visit(c, index)

    try:
        visit(roots[0], -1)
        skeleton = Skeleton(tuple(names), tuple(parents), np.stack(offsets))
    except (TypeError, ValueError, KeyError, RecursionError) as e:
        raise UserError(path, f"its skeleton is malformed ({type(e).__name__}: {e})") from None
    if not np.isfinite(skeleton.offsets).all():
        raise UserError(path, "its skeleton offsets hold NaN or infinite values")
    return skeleton.with_offsets(skeleton.offsets * _unit_to_metres(path, skeleton))


def _descendants(full: dict, j: str) -> list[str]:
    out: list[str] = []
    stack = list(full[j]["children"])
    while stack:
        c = stack.pop()
        if c in full and c not in out and c != j:
            out.append(c)
            stack.extend(full[c]["children"])
    return out


def _unit_to_metres(path: Path, skeleton: Skeleton) -> float:
    """Factor to metres, judged from the rest pose's height (mocap BVHs are in cm, some in m)."""
    rest = skeleton.rest_positions()
    height = float(rest[:, 1].max() - rest[:, 1].min())
    if 100.0 <= height <= 250.0:
        return 0.01
    if 1.0 <= height <= 2.5:
        return 1.0
    raise UserError(path, f"its skeleton is {height:.3g} units tall: neither centimetres nor metres of a person")


# --- one take ------------------------------------------------------------------------------


def read_take(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of one Motorica npz (no pickled objects allowed), checked for shape and NaNs."""
    path = Path(path)
    require_file(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as e:
        # zipfile: NotImplementedError for a compression method or zip version it lacks, RuntimeError
        # for an encrypted member
        raise UserError(path, f"not a readable npz file ({e})") from None
    missing = [k for k in ("motion", "motion_columns", "audio_feats", "audio_columns") if k not in arrays]
    if missing:
        raise UserError(path, f"not a Motorica take: missing {', '.join(missing)}")
    motion, audio = arrays["motion"], arrays["audio_feats"]
    for key, arr, cols in (("motion", motion, "motion_columns"), ("audio_feats", audio, "audio_columns")):
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number) or len(arr) == 0:
            raise UserError(path, f"{key} has shape {arr.shape} and dtype {arr.dtype}, expected (frames, features) numbers")
        if arrays[cols].shape != (arr.shape[1],):
            raise UserError(path, f"{cols} names {arrays[cols].size} columns but {key} has {arr.shape[1]}")
        if not np.isfinite(arr).all():
            raise UserError(path, f"{key} holds NaN or infinite values")
    if len(motion) != len(audio):
        raise UserError(path, f"motion has {len(motion)} frames but audio_feats {len(audio)}: not frame-aligned")
    arrays["fps"] = np.float64(_fps(path, arrays))
    return arrays


def _fps(path: Path, arrays: dict[str, np.ndarray]) -> float:
    if "fps" in arrays:
        try:
            value = np.asarray(arrays["fps"])
            if value.size != 1:
                raise ValueError("not one value")
            fps = float(value.reshape(()))
        except (TypeError, ValueError):
            value = arrays["fps"]
            raise UserError(path, f"fps is not one number (an array of shape {np.shape(value)} and dtype "
                                  f"{getattr(value, 'dtype', type(value).__name__)})") from None
    elif "motion_time_s" in arrays and len(arrays["motion_time_s"]) > 1:
        fps = 1.0 / float(np.median(np.diff(arrays["motion_time_s"])))
    else:
        raise UserError(path, "says neither fps nor motion_time_s: the frame rate is unknown")
    if not np.isfinite(fps) or fps <= 0:
        raise UserError(path, f"frame rate {fps} is not positive")
    return fps


def rotation_joints(columns) -> list[str]:
    """Joints with an exp map (``<joint>_alpha``, ``_beta``, ``_gamma``) among the motion columns."""
    cols = [str(c) for c in columns]
    return [c[: -len("_alpha")] for c in cols if c.endswith("_alpha")]


def take_to_motion(path: Path, motion: np.ndarray, columns, fps: float, skeleton: Skeleton) -> Motion:
    """Rebuild a canonical Motion from the 61 Motorica columns (see the module docstring)."""
    cols = [str(c) for c in columns]
    index = {c: i for i, c in enumerate(cols)}
    missing = [c for c in ROOT_COLUMNS if c not in index]
    if missing:
        raise UserError(path, f"motion_columns lack {', '.join(missing)}")
    t = len(motion)
    data = motion.astype(np.float64)
    to_m = _take_unit(path, skeleton, data[:, index["Hips_Yposition"]])

    rotvec = np.zeros((t, skeleton.num_joints, 3))
    for j, name in enumerate(skeleton.names):
        keys = [f"{name}_{a}" for a in ("alpha", "beta", "gamma")]
        if all(k in index for k in keys):
            rotvec[:, j] = data[:, [index[k] for k in keys]]
        elif j == 0 or any(k in index for k in keys):
            raise UserError(path, f"motion_columns lack the exp map of {name}")

    heading = np.cumsum(data[:, index["reference_dYrotation"]])
    heading -= heading[0]  # theta_0 = 0; theta_t = sum of the deltas of frames 1..t
    step = np.zeros((t, 3))
    step[1:, 0] = data[1:, index["reference_dXposition"]]
    step[1:, 2] = data[1:, index["reference_dZposition"]]
    root = np.cumsum(_turn(heading, step), axis=0)
    residual = np.zeros((t, 3))  # hips offset from the reference in the heading frame: zero in LDA's data
    for axis, col in ((0, "Hips_Xposition"), (2, "Hips_Zposition")):
        if col in index:
            residual[:, axis] = data[:, index[col]]
    root += _turn(heading, residual)
    root[:, 1] = data[:, index["Hips_Yposition"]]

    yaw = np.zeros((t, 3))
    yaw[:, 1] = heading
    hips = axis_angle_to_matrix(torch.from_numpy(yaw)) @ axis_angle_to_matrix(torch.from_numpy(rotvec[:, 0]))
    rotvec[:, 0] = matrix_to_axis_angle(hips).numpy()
    return Motion(fps, skeleton, root * to_m, rotvec)


def _turn(heading: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors (T, 3) about +Y by `heading` (T,) radians, right-handed."""
    c, s = np.cos(heading), np.sin(heading)
    return np.stack([c * v[:, 0] + s * v[:, 2], v[:, 1], -s * v[:, 0] + c * v[:, 2]], -1)


def _take_unit(path: Path, skeleton: Skeleton, hips_height: np.ndarray) -> float:
    """Factor from the take's length unit to metres: centimetres when the hips stand ~1 m high in cm."""
    rest = skeleton.rest_positions()
    legs = float(rest[0, 1] - rest[:, 1].min())  # hips above the lowest joint at rest, metres
    median = float(np.median(hips_height))
    if 0.3 * legs * 100 <= median <= 2.0 * legs * 100:
        return 0.01
    if 0.3 * legs <= median <= 2.0 * legs:
        return 1.0
    raise UserError(path, f"Hips_Yposition is around {median:.3g}: neither centimetres nor metres for this skeleton")


# --- the dataset ---------------------------------------------------------------------------


def pipeline_file(root: Path) -> Path:
    found = sorted(root.glob(PIPELINE_GLOB))
    if not found:
        raise UserError(root / "data_pipe.expmap_30fps.sav", "no such file: Motorica's skeleton comes from it")
    return found[0]


def detect(root: Path) -> bool:
    return root.is_dir() and any(root.glob(PIPELINE_GLOB)) and any(root.glob("*.npz"))


@register("motorica", detect)
def open_motorica(root: Path) -> Dataset:
    root = Path(root)
    takes = sorted(root.glob("*.npz"))
    if not takes:
        raise UserError(root, "no Motorica takes (*.npz)")
    pipe = pipeline_file(root)
    skeletons: dict[tuple[str, ...], Skeleton] = {}  # by the joints a take rotates

    def load(name: str) -> Sequence:
        path = root / f"{name}.npz"
        arrays = read_take(path)
        joints = tuple(rotation_joints(arrays["motion_columns"]))
        if joints not in skeletons:
            skeletons[joints] = read_pipeline_skeleton(pipe, list(joints))
        motion = take_to_motion(path, arrays["motion"], arrays["motion_columns"], float(arrays["fps"]), skeletons[joints])
        return Sequence(
            name=name,
            motion=motion,
            song=None,
            offset=0.0,
            style=style_of(name),
            group=capture_of(name),
            features={
                EXPMAP_FEATURE: arrays["motion"].astype(np.float32),
                AUDIO_FEATURE: arrays["audio_feats"].astype(np.float32),
            },
        )

    names = [p.stem for p in takes]
    return Dataset("motorica", root, names, load, {n: style_of(n) for n in names},
                   sources=lambda name: [root / f"{name}.npz", pipe], test_every_style=False,
                   feature_modalities={EXPMAP_FEATURE: "motion", AUDIO_FEATURE: "music"})


def capture_of(name: str) -> str:
    """The capture a take comes from: `_00` and `_01` are two 30-fps phases of one 60-fps capture."""
    return re.sub(r"_\d\d$", "", name)
