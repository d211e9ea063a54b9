"""Dance with Melody (Tang, Jia, Mao, ACM MM 2018) into canonical SMPL-skeleton motion.

Layout: `ROOT/DANCE_<style>_<n>/{skeletons.json, config.json, audio.mp3}`, 25 fps.
`skeletons.json` holds 23 marker-derived joints per frame relative to `center` (the root's world
trajectory), centimetres, Y up; `config.json`'s `start_position` S puts motion frame i at song time
(S + i) / 25 s. A folder of such sequences without any `audio.mp3` loads as motion only.

What each of the 23 points is, which side it is on, and why the file's frame is read as a mirror
image (left-handed) are measured in docs/dance_with_melody.md. Loading a sequence:
1. markers to metres, X negated (left-handed file frame to dancegen's right-handed one);
2. the slow drift of the vertical (the feet of one take float up to 40 cm over a few minutes)
   is removed by putting a running median of the lowest foot marker at y = 0;
3. the markers give targets for SMPL's 24 joints (spine, collars and neck are built from the
   pelvis and shoulder frames and SMPL's rest torso; hands follow the forearms);
4. `dancegen.motion.retarget` solves SMPL-topology rotations with this sequence's bone lengths
   (medians over frames) and SMPL's rest directions, so the rest pose is SMPL's T-pose.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
from scipy.ndimage import percentile_filter, uniform_filter1d
from scipy.spatial.transform import Rotation

from ..errors import UserError
from ..motion import Motion
from ..motion import retarget
from ..motion.retarget import bone_lengths_from_positions, continuous_rotvec, skeleton_with_lengths, solve_rotations
from ..motion.skeleton import SMPL_JOINT_NAMES, smpl_skeleton
from .base import Dataset, Sequence, register

FPS = 25.0
STYLES = {"C": "cha-cha", "R": "rumba", "T": "tango", "W": "waltz"}
NAME_PATTERN = re.compile(r"DANCE_([A-Z])_(\d+)$")

# The 23 points, in file order, as measured in docs/dance_with_melody.md (sides after the mirror).
MARKERS = (
    "head_left", "head_right", "pelvis",
    "left_shoulder", "left_elbow", "left_forearm", "left_wrist",
    "left_hip", "left_knee", "left_ankle", "left_heel", "left_toe",
    "right_shoulder", "right_elbow", "right_forearm", "right_wrist",
    "right_hip", "right_knee", "right_ankle", "right_heel", "right_toe",
    "right_forearm_2", "left_wrist_2",
)
M = {name: i for i, name in enumerate(MARKERS)}
J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}
# SMPL joints placed directly on a marker.
DIRECT = {
    "root": "pelvis", "lhip": "left_hip", "rhip": "right_hip", "lknee": "left_knee",
    "rknee": "right_knee", "lankle": "left_ankle", "rankle": "right_ankle", "ltoes": "left_toe",
    "rtoes": "right_toe", "lshoulder": "left_shoulder", "rshoulder": "right_shoulder",
    "lelbow": "left_elbow", "relbow": "right_elbow", "lwrist": "left_wrist", "rwrist": "right_wrist",
}
FOOT_MARKERS = [M[n] for n in ("left_ankle", "left_heel", "left_toe", "right_ankle", "right_heel", "right_toe")]

_X, _Z = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
# Where each twist hint points in SMPL's rest pose (T-pose, facing +Z, left on +X). Knees and
# elbows take no hint: their least-twist rotation from the thigh or upper arm is a hinge.
REST_HINTS = {
    J["belly"]: _X, J["spine"]: _X, J["neck"]: _X,  # the body's left
    J["lhip"]: _Z, J["rhip"]: _Z,  # a bent knee points forward
    J["lankle"]: _X, J["rankle"]: _X,  # the foot's left side
    J["lshoulder"]: -_Z, J["rshoulder"]: -_Z,  # a bent elbow points back
}
# How far (metres) a knee or elbow must stand off the hip-ankle or shoulder-wrist line before it
# alone sets the thigh's or upper arm's twist; closer to straight, the least-twist rotation takes
# over smoothly (see solve_rotations). Measured trade-off on the arms: 0.03 m.
TWIST_FALLBACK = np.array([0.03 if name in ("lshoulder", "rshoulder") else 0.02 for name in SMPL_JOINT_NAMES])
# In the fits of joints with several children, built joints count less than measured ones.
CHILD_WEIGHTS = np.array([0.25 if n in ("belly", "linshoulder", "rinshoulder") else 1.0 for n in SMPL_JOINT_NAMES])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _frames(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    x = _unit(primary)
    y = _unit(secondary - (secondary * x).sum(-1, keepdims=True) * x)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def _off_line(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The part of point - start perpendicular to the line start-end (where a bent knee points)."""
    axis, v = _unit(end - start), point - start
    return v - (v * axis).sum(-1, keepdims=True) * axis


# ---------------------------------------------------------------------------------------------
# Reading and checking the files


def _read_json(path: Path):
    if not path.is_file():
        raise UserError(path, "missing: every sequence folder needs skeletons.json and config.json")
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(path, f"not valid JSON ({e})") from None


def read_config(folder: Path) -> float:
    """start_position (song frames at 25 fps) from config.json."""
    path = folder / "config.json"
    config = _read_json(path)
    start = config.get("start_position") if isinstance(config, dict) else None
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not np.isfinite(start) or start < 0:
        raise UserError(path, f"needs a non-negative number 'start_position', got {start!r}")
    end = config.get("end_position", start)
    if isinstance(end, bool) or not isinstance(end, (int, float)) or end < start:
        raise UserError(path, f"'end_position' {end!r} is not a number at or after 'start_position' {start}")
    return float(start)


_LENGTH = re.compile(rb'"length"\s*:\s*(-?\d+)\s*[,}]')


def _numbers_after(text: bytes, key: bytes) -> tuple[np.ndarray, int] | None:
    """The numbers of one array-valued key, and how many '[' it opens; None if not plainly there."""
    if text.count(key) != 1:
        return None
    start = text.find(b":", text.index(key)) + 1
    if start == 0:  # no colon after the key: not plainly there
        return None
    end = text.find(b'"', start)  # the next key (these values hold no strings)
    value = text[start:len(text) if end < 0 else end].rstrip(b" \t\r\n,}")
    if value.count(b"[") != value.count(b"]"):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy's note on unparsed trailing text
        try:
            numbers = np.fromstring(value.translate(_NO_BRACKETS).decode("ascii", "replace"), sep=",")
        except ValueError:  # numpy >= 2 refuses text it cannot read (null, a string): the json module reports it
            return None
    return numbers, value.count(b"[")


_NO_BRACKETS = bytes.maketrans(b"[]", b"  ")


def _fast_skeletons(text: bytes) -> tuple[int | None, np.ndarray, np.ndarray] | None:
    """skeletons.json parsed with numpy's number reader, ~4x faster than json for these files.

    Takes only files whose layout it can check completely (a number count and a bracket count per
    array that only the regular T x 23 x 3 nesting gives); anything else returns None and goes to
    the json module, which then reports the problem precisely.
    """
    center, skeletons = _numbers_after(text, b'"center"'), _numbers_after(text, b'"skeletons"')
    if center is None or skeletons is None or text.count(b'"') != (6 if b'"length"' in text else 4):
        return None
    (center, center_brackets), (skeletons, skeleton_brackets) = center, skeletons
    frames = len(center) // 3
    if (len(center) != 3 * frames or center_brackets != frames + 1
            or len(skeletons) != frames * len(MARKERS) * 3 or skeleton_brackets != 1 + frames * (1 + len(MARKERS))):
        return None
    length = _LENGTH.search(text)
    if b'"length"' in text and length is None:
        return None
    length = int(length.group(1)) if length else None
    return length, center.reshape(frames, 3), skeletons.reshape(frames, len(MARKERS), 3)


def read_markers(folder: Path) -> np.ndarray:
    """World marker positions (T, 23, 3) in metres, in dancegen's frame (right-handed, Y up)."""
    path = folder / "skeletons.json"
    if not path.is_file():
        raise UserError(path, "missing: every sequence folder needs skeletons.json and config.json")
    fast = _fast_skeletons(path.read_bytes())
    if fast is not None:
        length, center, markers = fast
    else:
        data = _read_json(path)
        if not isinstance(data, dict) or not {"center", "skeletons"} <= data.keys():
            raise UserError(path, "needs keys 'length', 'center' and 'skeletons'")
        try:
            center = np.array(data["center"], dtype=np.float64)
            markers = np.array(data["skeletons"], dtype=np.float64)
        except (ValueError, TypeError):
            problem = "'center' and 'skeletons' must be arrays of numbers of shape (T, 3) and (T, 23, 3)"
            raise UserError(path, problem) from None
        length = data.get("length")
    if markers.ndim != 3 or markers.shape[1:] != (len(MARKERS), 3) or center.shape != (len(markers), 3):
        raise UserError(path, f"'skeletons' {markers.shape} and 'center' {center.shape} must be (T, 23, 3) and (T, 3)")
    if len(markers) < 2:
        raise UserError(path, f"holds {len(markers)} frame(s); a dance needs at least 2")
    if length is not None and length != len(markers):
        raise UserError(path, f"'length' is {length} but 'skeletons' holds {len(markers)} frames")
    if not (np.isfinite(markers).all() and np.isfinite(center).all()):
        raise UserError(path, "holds NaN or infinite coordinates")
    world = (markers + center[:, None]) / 100.0  # centimetres to metres
    world[..., 0] *= -1.0  # the file's frame is a mirror image (left-handed): see the docs
    return world


def remove_height_drift(markers: np.ndarray, fps: float = FPS, window: float = 4.0) -> np.ndarray:
    """Shift heights so that the floor, a running median of the lowest foot marker, is y = 0.

    The horizontal trajectory is untouched; only a slow (seconds) vertical offset is removed, so
    rise and fall, jumps and lifted feet stay.
    """
    lowest = markers[:, FOOT_MARKERS, 1].min(axis=1)
    size = max(1, int(round(window * fps)) | 1)
    floor = uniform_filter1d(percentile_filter(lowest, 50, size=size, mode="nearest"), size, mode="nearest")
    out = markers.copy()
    out[..., 1] -= floor[:, None]
    return out


# ---------------------------------------------------------------------------------------------
# Markers to SMPL joints, and the retarget


def canonical_targets(markers: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Targets for SMPL's 24 joints from world markers (T, 23, 3).

    Returns target positions (T, 24, 3) (NaN for the hands, which have no marker), the twist hints
    for `solve_rotations`, and the rest offsets of the hips from the root: the pelvis's measured
    shape (median in the pelvis frame), which keeps SMPL's rest directions of the hips' midpoint
    and of the line between them but not its width-to-height ratio.
    """
    t = len(markers)
    rest = smpl_skeleton().rest_positions().astype(np.float64)
    targets = np.full((t, len(SMPL_JOINT_NAMES)), np.nan)[..., None].repeat(3, axis=-1)
    for joint, marker in DIRECT.items():
        targets[:, J[joint]] = markers[:, M[marker]]
    root, lhip, rhip = targets[:, J["root"]], targets[:, J["lhip"]], targets[:, J["rhip"]]
    lsh, rsh = targets[:, J["lshoulder"]], targets[:, J["rshoulder"]]
    neck = (lsh + rsh) / 2
    targets[:, J["neck"]] = neck
    targets[:, J["head"]] = (markers[:, M["head_left"]] + markers[:, M["head_right"]]) / 2

    # Pelvis and thorax orientations: the rotations taking SMPL's rest hips and shoulders onto the
    # observed ones. The spine joints between them turn by equal steps from one to the other.
    def orientation(up, lateral, rest_up, rest_lateral):
        return _frames(up, lateral) @ _frames(rest_up, rest_lateral).T

    r = {name: rest[J[name]] for name in SMPL_JOINT_NAMES}
    rest_hips = (r["lhip"] + r["rhip"]) / 2
    pelvis = orientation(root - (lhip + rhip) / 2, lhip - rhip, r["root"] - rest_hips, r["lhip"] - r["rhip"])
    thorax = orientation(neck - root, lsh - rsh, r["neck"] - r["root"], r["lshoulder"] - r["rshoulder"])
    turn = (Rotation.from_matrix(pelvis).inv() * Rotation.from_matrix(thorax)).as_rotvec()
    between = [pelvis @ Rotation.from_rotvec(turn * k / 3).as_matrix() for k in (1, 2)]
    # SMPL's rest spine, scaled to this dancer's pelvis-to-neck distance, bent by those rotations;
    # what it misses the neck by is shared along it in proportion to length.
    torso = np.median(np.linalg.norm(neck - root, axis=-1)) / np.linalg.norm(r["neck"] - r["root"])
    chain = [("belly", "root", pelvis), ("spine", "belly", between[0]),
             ("chest", "spine", between[1]), ("neck", "chest", thorax)]
    points, reach = [root], [0.0]
    for joint, parent, orient in chain:
        points.append(points[-1] + orient @ ((r[joint] - r[parent]) * torso))
        reach.append(reach[-1] + np.linalg.norm(r[joint] - r[parent]))
    miss = neck - points[-1]
    for (joint, _, _), point, along in zip(chain[:3], points[1:4], reach[1:4]):
        targets[:, J[joint]] = point + miss * (along / reach[-1])
    chest = targets[:, J["chest"]]
    width = np.median(np.linalg.norm(lsh - rsh, axis=-1)) / np.linalg.norm(r["lshoulder"] - r["rshoulder"])
    scale = np.array([width, torso, torso])
    for side in "lr":
        targets[:, J[f"{side}inshoulder"]] = chest + thorax @ ((r[f"{side}inshoulder"] - r["chest"]) * scale)

    # Twist hints: the body's left along the spine, the ear line, where knees and elbows point,
    # the feet's left side. Lengths are confidences (metres); see solve_rotations. The ear line is
    # trusted only while the two head points are apart (occluded, they sometimes collapse to a few
    # centimetres), else the head follows the chest.
    ears = markers[:, M["head_left"]] - markers[:, M["head_right"]]
    hints = {
        J["belly"]: between[0] @ _X,  # the body's left, turning from the hips' to the shoulders'
        J["spine"]: between[1] @ _X,
        J["neck"]: _unit(ears) * np.clip((np.linalg.norm(ears, axis=-1, keepdims=True) - 0.06) / 0.03, 0, 1),
    }
    for side, s in (("l", "left"), ("r", "right")):
        hip, knee, ankle = (markers[:, M[f"{s}_{n}"]] for n in ("hip", "knee", "ankle"))
        heel, toe = markers[:, M[f"{s}_heel"]], markers[:, M[f"{s}_toe"]]
        knee_forward = _off_line(knee, hip, ankle) + 0.03 * _unit(toe - heel)
        hints[J[f"{side}hip"]] = knee_forward
        hints[J[f"{side}ankle"]] = _unit(np.cross(ankle - heel, toe - heel))
        shoulder, elbow, wrist = (markers[:, M[f"{s}_{n}"]] for n in ("shoulder", "elbow", "wrist"))
        hints[J[f"{side}shoulder"]] = _off_line(elbow, shoulder, wrist)
    pelvis_local = np.einsum("tji,tkj->tki", pelvis, targets[:, [J["lhip"], J["rhip"]]] - root[:, None])
    hip_offsets = dict(zip((J["lhip"], J["rhip"]), np.median(pelvis_local, axis=0)))
    return targets, hints, hip_offsets


def hand_lengths(lengths: np.ndarray) -> np.ndarray:
    """Hands have no marker: SMPL's hand bone scaled by the forearm's ratio to SMPL's."""
    smpl = smpl_skeleton().bone_lengths()
    out = lengths.copy()
    for side in "lr":
        out[J[f"{side}hand"]] = smpl[J[f"{side}hand"]] * lengths[J[f"{side}wrist"]] / smpl[J[f"{side}wrist"]]
    return out


def motion_from_markers(markers: np.ndarray, fps: float = FPS) -> tuple[Motion, np.ndarray]:
    """Canonical motion from world markers (T, 23, 3) in metres; also returns the joint targets."""
    targets, hints, hip_offsets = canonical_targets(markers)
    template = smpl_skeleton()
    lengths = hand_lengths(bone_lengths_from_positions(targets, template.parents))
    offsets = skeleton_with_lengths(template, lengths).offsets.copy()
    for joint, offset in hip_offsets.items():
        offsets[joint] = offset
    skeleton = template.with_offsets(offsets)
    root, local, _ = solve_rotations(
        targets, skeleton, hints, REST_HINTS, twist_fallback=TWIST_FALLBACK, child_weights=CHILD_WEIGHTS
    )
    return Motion(fps, skeleton, root, continuous_rotvec(local)), targets


# ---------------------------------------------------------------------------------------------
# The dataset


def style_of(name: str) -> str | None:
    match = NAME_PATTERN.match(name)
    return STYLES.get(match.group(1)) if match else None


def load_sequence(folder: str | Path, *, fix_height_drift: bool = True, song_required: bool = False) -> Sequence:
    """One sequence folder as a `Sequence` (song None when there is no audio.mp3)."""
    folder = Path(folder)
    start = read_config(folder)
    markers = read_markers(folder)
    if fix_height_drift:
        markers = remove_height_drift(markers)
    with np.errstate(all="ignore"):
        try:
            motion, _ = motion_from_markers(markers)
        except (ValueError, np.linalg.LinAlgError):  # scipy refuses a null frame (coincident markers)
            motion = None
    if motion is None or not (np.isfinite(motion.rotations).all() and np.isfinite(motion.root_translation).all()
                              and np.isfinite(motion.skeleton.offsets).all()):
        raise UserError(folder / "skeletons.json", "its markers make no body to solve (coincident or collinear "
                                                   "hip and shoulder markers in some frame)")
    song = folder / "audio.mp3"
    if not song.is_file():
        if song_required:
            raise UserError(song, "missing: the other sequences of this dataset have their song")
        song = None
    return Sequence(folder.name, motion, song, offset=start / FPS, style=style_of(folder.name))


def _sequence_folders(root: Path) -> list[Path]:
    return sorted((p for p in root.glob("DANCE_*") if p.is_dir()), key=lambda p: p.name)


def detect(root: Path) -> bool:
    return Path(root).is_dir() and any(Path(root).glob("DANCE_*/skeletons.json"))


@register("dance-with-melody", detect)
def open(root: Path) -> Dataset:  # noqa: A001 - the registry's name for a loader's entry point
    """The sequences of a Dance with Melody folder (paired with songs, or motion only)."""
    root = Path(root)
    folders = _sequence_folders(root)
    if not folders:
        raise UserError(root, "no DANCE_<style>_<n> sequence folders")
    for folder in folders:
        for name in ("skeletons.json", "config.json"):
            if not (folder / name).is_file():
                raise UserError(folder / name, "missing: every sequence folder needs skeletons.json and config.json")
    with_song = [(f / "audio.mp3").is_file() for f in folders]
    if any(with_song) and not all(with_song):
        missing = folders[with_song.index(False)] / "audio.mp3"
        raise UserError(missing, "missing: the other sequences of this dataset have their song "
                        "(keep motion-only sequences in a folder of their own)")
    by_name = {f.name: f for f in folders}
    files = ("skeletons.json", "config.json", "audio.mp3") if any(with_song) else ("skeletons.json", "config.json")
    # What a prepared sequence depends on: its files, and the code that maps and retargets them.
    code = [Path(__file__), Path(retarget.__file__)]
    return Dataset(
        kind="dance-with-melody",
        root=root,
        names=list(by_name),
        load=lambda name: load_sequence(by_name[name], song_required=any(with_song)),
        styles={name: style_of(name) for name in by_name},
        sources=lambda name: [by_name[name] / f for f in files] + code,
    )
