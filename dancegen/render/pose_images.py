"""OpenPose-style pose images of a Motion: what an OpenPose ControlNet takes as its condition.

Each frame is the COCO-18 keypoint layout drawn as ControlNet's OpenPose preprocessor draws it
(lllyasviel's annotator, the one `sd-controlnet-openpose` was trained on): a black background, a
filled circle in each keypoint's colour, then each of the 17 limbs as a filled ellipse in the limb's
colour blended over the canvas at 60% opacity. Circle radius and ellipse half-width are 4 pixels at
512 pixels (scaled with the image's shorter side). Drawn with PIL by hand: no maintained library
draws this layout from 3-D joints (controlnet_aux draws it from its own detector's output, with cv2).

The canonical SMPL skeleton maps to COCO-18 as follows. Shoulders, elbows, wrists, hips, knees and
ankles are the SMPL joints of the same names. The neck is the midpoint of the two shoulders, as
OpenPose built its neck keypoint from COCO's shoulders. SMPL has no face joints, so the nose, eyes
and ears are an approximation: fixed offsets from the head joint (FACE_OFFSETS, from typical head
proportions, scaled with the skeleton's height) in a head frame made from joint positions only, its
up along the upper spine (chest→neck) and its left along the shoulders' right→left. The face thus
bends and turns with the upper body, but not with the neck's and head's own rotations: in motion
retargeted from positions (Dance with Melody, and the models trained on it) the head joint's twist is
undetermined and often half a turn off, and neck→head leans back some 15-25° from SMPL's rest.
A face keypoint is hidden, as OpenPose would miss it, when it faces away from the
camera (nose and eyes when the dancer faces away, the far ear and eye in profile); a keypoint
behind the camera is hidden too, with its limbs.

The camera is a pinhole whose target follows the dancer's ground position (Gaussian-smoothed, as
the MP4's camera) at a fixed height, the figure's median vertical centre, so the figure stays
framed. Its direction: `front` looks at the dancer from the direction they face on average, `side`
from their left (azimuth 90), `follow` from the direction they face at each moment (smoothed over
FOLLOW_HEADING_SECONDS), so a turning dancer keeps facing the camera. Azimuth counts degrees around
the dancer towards their left; with `front`, the dancer's right wrist is on the image's left.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import UserError
from ..motion import Motion
from .frames import FOLLOW_SECONDS

COCO18_NAMES = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                "right_eye", "left_eye", "right_ear", "left_ear")
# OpenPose's limb pairs in its drawing order (its limbSeq, 0-based, without the two ear-shoulder pairs it skips).
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
# RGB of keypoint k, and of limb k (the first 17).
COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
           (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
           (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
LIMB_OPACITY = 0.6
STICK_WIDTH, KEYPOINT_RADIUS, REFERENCE_SIZE = 4, 4, 512  # pixels at REFERENCE_SIZE (the shorter side)
ELLIPSE_POINTS = 72  # points on a limb's outline (cv2.ellipse2Poly draws 361 at 1-degree steps)

# COCO keypoints taken straight from SMPL joints (names as in SMPL_JOINT_NAMES).
BODY_JOINTS = {2: "rshoulder", 3: "relbow", 4: "rwrist", 5: "lshoulder", 6: "lelbow", 7: "lwrist", 8: "rhip",
               9: "rknee", 10: "rankle", 11: "lhip", 12: "lknee", 13: "lankle"}
# Face keypoints: offsets from SMPL's head joint in the rest pose (x the body's left, y up, z forward), metres
# for the SMPL template's size; the outward direction of the face there; and how far past side-on it still shows
# (the cosine between that direction and the direction to the camera must exceed it).
FACE_OFFSETS = {0: (0.0, 0.03, 0.10), 14: (-0.033, 0.06, 0.08), 15: (0.033, 0.06, 0.08),
                16: (-0.075, 0.04, -0.01), 17: (0.075, 0.04, -0.01)}
FACE_NORMALS = {0: (0.0, 0.0, 1.0), 14: (-0.4, 0.0, 1.0), 15: (0.4, 0.0, 1.0), 16: (-1.0, 0.0, 0.0), 17: (1.0, 0.0, 0.0)}
FACE_SHOWS = {0: -0.2, 14: 0.0, 15: 0.0, 16: -0.25, 17: -0.25}

VIEWS = {"front": 0.0, "side": 90.0, "follow": 0.0}  # azimuth, degrees towards the dancer's left
ELEVATION_DEG, DISTANCE, FOV_DEG = 5.0, 3.2, 40.0  # default camera: slightly above, 3.2 m away, 40° vertically
FOLLOW_HEADING_SECONDS = 1.0  # `follow`: the dancer's heading is Gaussian-smoothed over this
NEAREST = 0.05  # metres: keypoints closer to the camera plane than this (or behind it) are hidden


@dataclass(frozen=True)
class PoseCamera:
    """A pinhole camera per frame: eye positions (T, 3) and axes (T, 3, 3: right, up, forward rows)."""

    eyes: np.ndarray
    axes: np.ndarray
    focal: float  # pixels
    centre: tuple[float, float]  # principal point, pixels

    @classmethod
    def around(cls, keypoints: np.ndarray, fps: float, size: tuple[int, int], *, view: str = "front",
               azimuth: float | None = None, elevation: float | None = None, distance: float | None = None,
               fov: float = FOV_DEG) -> "PoseCamera":
        """A camera `distance` metres (default DISTANCE) from the dancer (COCO-18 keypoints (T, 18, 3),
        world) at `azimuth` degrees round from their front (default: the view's) and `elevation` degrees
        up (default ELEVATION_DEG)."""
        from scipy.ndimage import gaussian_filter1d

        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        elevation = ELEVATION_DEG if elevation is None else elevation
        distance = DISTANCE if distance is None else distance
        if not distance > 0:
            raise UserError(None, f"the camera's distance must be positive, got {distance:g}")
        hips = (keypoints[:, 8] + keypoints[:, 11]) / 2
        ground = hips[:, [0, 2]]
        left = keypoints[:, 11] - keypoints[:, 8] + keypoints[:, 5] - keypoints[:, 2]  # right to left, hips and shoulders
        heading = np.stack([-left[:, 2], left[:, 0]], axis=1)  # (left × +Y) on the ground: (x, z) the dancer faces
        if len(ground) > 1:  # zero-phase smoothing: the camera neither lags nor leads the dancer
            ground = gaussian_filter1d(ground, sigma=FOLLOW_SECONDS * fps, axis=0, mode="nearest")
            if view == "follow":
                heading = gaussian_filter1d(heading, sigma=FOLLOW_HEADING_SECONDS * fps, axis=0, mode="nearest")
        if view != "follow":  # the direction the dancer faces on average (the first frame's when that cancels out)
            mean = heading.mean(axis=0)
            heading = np.broadcast_to(mean if np.linalg.norm(mean) > 0.1 * np.linalg.norm(heading[0]) else heading[0],
                                      heading.shape)
        look_height = np.median((keypoints[..., 1].min(axis=1) + keypoints[..., 1].max(axis=1)) / 2)
        targets = np.stack([ground[:, 0], np.full(len(ground), look_height), ground[:, 1]], axis=1)
        # Yaw about +Y from +Z; counter-clockwise seen from above is towards the dancer's left (+X facing +Z).
        yaw = np.arctan2(heading[:, 0], heading[:, 1]) + np.radians(VIEWS[view] if azimuth is None else azimuth)
        pitch = np.radians(elevation)
        outward = np.stack([np.cos(pitch) * np.sin(yaw), np.full_like(yaw, np.sin(pitch)), np.cos(pitch) * np.cos(yaw)], 1)
        forward = -outward
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right, axis=1, keepdims=True)
        up = np.cross(right, forward)
        w, h = size
        focal = h / 2 / np.tan(np.radians(fov) / 2)
        return cls(targets + distance * outward, np.stack([right, up, forward], axis=1), focal, (w / 2, h / 2))

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (T, K, 3) → pixels (T, K, 2) (u right, v down) and depths (T, K), metres."""
        cam = np.einsum("tij,tkj->tki", self.axes, points - self.eyes[:, None])
        z = np.maximum(cam[..., 2], 1e-6)
        uv = np.stack([self.centre[0] + self.focal * cam[..., 0] / z, self.centre[1] - self.focal * cam[..., 1] / z], -1)
        return uv, cam[..., 2]


def coco18(motion: Motion) -> tuple[np.ndarray, np.ndarray]:
    """COCO-18 keypoints of a motion on the SMPL skeleton: world positions (T, 18, 3) and the outward
    directions (T, 18, 3) of the face keypoints (zero for body keypoints, which always face the camera).
    UserError when the skeleton lacks SMPL's joint names."""
    from ..motion import smpl_skeleton
    from .figure import _chain_height

    names = motion.skeleton.names
    missing = [n for n in (*BODY_JOINTS.values(), "chest", "neck", "head") if n not in names]
    if missing:
        raise UserError(None, f"pose images need a motion on the SMPL skeleton (joints named as in AIST++); "
                              f"this one lacks {', '.join(missing)}")
    positions = motion.positions().astype(np.float64)
    keypoints = np.zeros((motion.num_frames, 18, 3))
    normals = np.zeros_like(keypoints)
    for k, joint in BODY_JOINTS.items():
        keypoints[:, k] = positions[:, names.index(joint)]
    keypoints[:, 1] = (keypoints[:, 2] + keypoints[:, 5]) / 2
    head, neck, chest = (positions[:, names.index(j)] for j in ("head", "neck", "chest"))
    rest = _frame(np.array([1.0, 0.0, 0.0]), motion.skeleton.offsets[names.index("neck")].astype(np.float64))
    turn = _frame(keypoints[:, 5] - keypoints[:, 2], neck - chest) @ rest.T  # (T, 3, 3): the head from its rest pose
    scale = _chain_height(motion.skeleton) / _chain_height(smpl_skeleton())  # FACE_OFFSETS fit SMPL's size
    for k, offset in FACE_OFFSETS.items():
        keypoints[:, k] = head + turn @ (scale * np.asarray(offset))
        normals[:, k] = turn @ (np.asarray(FACE_NORMALS[k]) / np.linalg.norm(FACE_NORMALS[k]))
    return keypoints, normals


def _frame(left: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(..., 3, 3) orthonormal frames whose columns are left, up and forward (left × up), up kept exactly."""
    up = up / np.linalg.norm(up, axis=-1, keepdims=True)
    left = left - (left * up).sum(-1, keepdims=True) * up
    left = left / np.maximum(np.linalg.norm(left, axis=-1, keepdims=True), 1e-9)
    return np.stack([left, up, np.cross(left, up)], axis=-1)


def keypoints_2d(points: np.ndarray, normals: np.ndarray, camera: PoseCamera) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (T, 18, 2) of COCO-18 keypoints (`coco18`'s) and whether each shows (T, 18): in front of the
    camera and, for the face's, facing it."""
    uv, depth = camera.project(points)
    to_camera = camera.eyes[:, None] - points
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=-1, keepdims=True), 1e-9)
    facing = (normals * to_camera).sum(-1)
    shows = np.full(18, -np.inf)
    shows[list(FACE_SHOWS)] = list(FACE_SHOWS.values())
    return uv, (depth > NEAREST) & (facing > shows)


def draw_pose(uv: np.ndarray, visible: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """One OpenPose-style image (RGB) of keypoints `uv` (18, 2), pixels, of which `visible` (18,) show."""
    w, h = size
    scale = min(w, h) / REFERENCE_SIZE
    stick, radius = max(1.0, STICK_WIDTH * scale), max(1.0, KEYPOINT_RADIUS * scale)
    canvas = Image.new("RGB", (w, h))
    pen = ImageDraw.Draw(canvas)
    for k in np.flatnonzero(visible):
        x, y = uv[k]
        pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=COLOURS[k])
    angles = np.linspace(0, 2 * np.pi, ELLIPSE_POINTS, endpoint=False)
    alpha = round(255 * LIMB_OPACITY)
    for (a, b), colour in zip(LIMBS, COLOURS):
        if not (visible[a] and visible[b]):
            continue
        d = uv[b] - uv[a]
        half = max(np.hypot(*d) / 2, 0.5)
        along = d / np.hypot(*d) if np.hypot(*d) > 0 else np.array([1.0, 0.0])
        outline = ((uv[a] + uv[b]) / 2 + np.outer(half * np.cos(angles), along)
                   + np.outer(stick * np.sin(angles), [-along[1], along[0]]))
        lo, hi = np.floor(outline.min(0)).astype(int), np.ceil(outline.max(0)).astype(int) + 1
        if (hi <= 0).any() or lo[0] >= w or lo[1] >= h:
            continue
        mask = Image.new("L", tuple(hi - lo))
        ImageDraw.Draw(mask).polygon([tuple(p) for p in outline - lo], fill=alpha)
        canvas.paste(colour, (*lo, *hi), mask)  # colour at `alpha` over what is there
    return canvas


def pose_frames(motion: Motion, *, size: tuple[int, int] = (512, 512), fps: float | None = None,
                view: str = "front", azimuth: float | None = None, elevation: float | None = None,
                distance: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The motion's COCO-18 keypoints through the camera: pixels (T, 18, 2), visibility (T, 18) and the
    frame rate (the motion resampled to `fps`, default its own)."""
    if motion.num_frames == 0:
        raise UserError(None, "the motion has no frames")
    if fps is not None and not fps > 0:
        raise UserError(None, f"--fps must be positive, got {fps:g}")
    if fps is not None and fps != motion.fps:
        motion = motion.resample(fps)
    points, normals = coco18(motion)
    camera = PoseCamera.around(points, motion.fps, size, view=view, azimuth=azimuth, elevation=elevation,
                               distance=distance)
    uv, visible = keypoints_2d(points, normals, camera)
    return uv, visible, motion.fps


def write_pose_images(motion: Motion, out_dir: str | os.PathLike, *, size: tuple[int, int] = (512, 512),
                      fps: float | None = None, view: str = "front", azimuth: float | None = None,
                      elevation: float | None = None, distance: float | None = None, frames: slice | None = None,
                      progress: bool = True) -> tuple[Path, int]:
    """Write `out_dir/NNNNNN.png`, one OpenPose-style image per frame (NNNNNN: the frame's number in the
    motion at `fps`), and `out_dir/keypoints.json` (OpenPose-like 2-D keypoints per frame). `frames`
    picks a range of them. The folder appears complete or not at all; an existing one is replaced only
    when it holds nothing but such outputs. Returns the folder and the number of images."""
    from tqdm import tqdm

    w, h = size
    if w < 8 or h < 8:
        raise UserError(None, f"pose images must be at least 8x8 pixels, got {w}x{h}")
    out = Path(out_dir)
    if out.exists() and not _only_pose_images(out):
        raise UserError(out, "exists and holds other files than pose images; choose a new or empty folder")
    uv, visible, rate = pose_frames(motion, size=size, fps=fps, view=view, azimuth=azimuth, elevation=elevation,
                                    distance=distance)
    indices = np.arange(len(uv))[frames if frames is not None else slice(None)]
    if len(indices) == 0:
        raise UserError(None, f"the frame range selects none of the motion's {len(uv)} frames (at {rate:g} fps)")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        people = []
        for i in tqdm(indices, desc="pose images", unit="frame", disable=not progress):
            draw_pose(uv[i], visible[i], size).save(stage / f"{i:06d}.png", compress_level=1)
            flat = np.concatenate([np.where(visible[i, :, None], uv[i], 0.0), visible[i, :, None]], axis=1)
            people.append({"frame": int(i), "people": [{"pose_keypoints_2d": np.round(flat, 2).ravel().tolist()}]})
        (stage / "keypoints.json").write_text(json.dumps({
            "format": "OpenPose COCO-18 body keypoints: x, y (pixels, y down), confidence (1 drawn, 0 hidden)",
            "keypoint_names": COCO18_NAMES, "width": w, "height": h, "fps": rate, "frames": people}))
        os.chmod(stage, 0o755)  # mkdtemp makes it 0700; outputs are ordinary folders
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(stage, out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out, len(indices)


def _only_pose_images(folder: Path) -> bool:
    """A folder (or file) we may replace: empty, or only NNNNNN.png and keypoints.json files."""
    if not folder.is_dir():
        return False
    return all(p.is_file() and (p.name == "keypoints.json" or (p.suffix == ".png" and p.stem.isdigit()))
               for p in folder.iterdir())
