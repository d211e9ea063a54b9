"""OpenPose-style pose images: count and size, OpenPose's limb colours where the limbs are, left and
right where a camera sees them, the folder written whole, and `dancegen render` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import synthetic_motion
from PIL import Image

from dancegen.cli import main
from dancegen.motion import Motion, smpl_skeleton
from dancegen.render.pose_images import (COCO18_NAMES, COLOURS, LIMB_OPACITY, LIMBS, coco18, draw_pose, pose_frames,
                                         write_pose_images)


def standing(frames: int = 12, fps: float = 30, facing_deg: float = 0.0) -> Motion:
    """A dancer in SMPL's rest T-pose (arms out to the sides) at the origin, facing `facing_deg` about +Y
    from +Z, bending a knee a little."""
    names = smpl_skeleton().names
    rotations = np.zeros((frames, 24, 3))
    rotations[:, 0, 1] = np.radians(facing_deg)
    rotations[:, names.index("lknee"), 0] = np.linspace(0, 0.3, frames)  # a little motion
    root = np.tile([0.0, 0.93, 0.0], (frames, 1))
    return Motion(fps, smpl_skeleton(), root, rotations)


def test_images_count_size_and_keypoints(tmp_path):
    motion = synthetic_motion(0, 45)  # 1.5 s at 30 fps
    out, count = write_pose_images(motion, tmp_path / "pose", size=(320, 240), fps=20, progress=False)
    pngs = sorted(out.glob("*.png"))
    assert count == len(pngs) == motion.resample(20).num_frames == 30
    assert [p.name for p in pngs[:2]] == ["000000.png", "000001.png"]
    with Image.open(pngs[0]) as im:
        assert im.size == (320, 240) and im.mode == "RGB"
    data = json.loads((out / "keypoints.json").read_text())
    assert data["keypoint_names"] == list(COCO18_NAMES) and data["fps"] == 20 and len(data["frames"]) == 30
    assert len(data["frames"][5]["people"][0]["pose_keypoints_2d"]) == 18 * 3
    assert not list(tmp_path.glob(".pose.*")), "the temporary folder is left behind"

    # a frame range names the files by their frame numbers; rerunning replaces the folder
    out, count = write_pose_images(motion, tmp_path / "pose", size=(64, 64), frames=slice(10, 13), progress=False)
    assert count == 3 and sorted(p.name for p in out.glob("*.png")) == ["000010.png", "000011.png", "000012.png"]


def test_limb_colour_at_the_limb_midpoint():
    uv, visible, _ = pose_frames(standing(), size=(512, 512), view="front")
    image = np.asarray(draw_pose(uv[0], visible[0], (512, 512)))
    for limb in (2, 3, 7, 10):  # right upper arm, right forearm, right thigh, left thigh
        a, b = LIMBS[limb]
        x, y = np.round((uv[0, a] + uv[0, b]) / 2).astype(int)
        expected = np.round(np.array(COLOURS[limb]) * LIMB_OPACITY)
        assert np.abs(image[y, x].astype(int) - expected).max() <= 2, (COCO18_NAMES[a], COCO18_NAMES[b], image[y, x])
    assert (image[:5, :5] == 0).all(), "the background is black"


def test_front_camera_sees_the_right_wrist_on_the_left():
    for facing in (0.0, 70.0, 180.0):  # the front view turns with the way the dancer faces
        uv, visible, _ = pose_frames(standing(facing_deg=facing), view="front")
        r, l = COCO18_NAMES.index("right_wrist"), COCO18_NAMES.index("left_wrist")
        assert uv[0, r, 0] < 256 - 60 and uv[0, l, 0] > 256 + 60, facing
        head, foot = COCO18_NAMES.index("nose"), COCO18_NAMES.index("right_ankle")
        assert uv[0, head, 1] < uv[0, foot, 1], "the head is above the feet"
        assert visible[0].all(), "from the front every keypoint shows"
    # seen from behind the face is hidden, both ears show
    uv, visible, _ = pose_frames(standing(), view="front", azimuth=180)
    shown = {n for n, v in zip(COCO18_NAMES, visible[0]) if v}
    assert {"nose", "right_eye", "left_eye"}.isdisjoint(shown) and {"right_ear", "left_ear"} <= shown
    assert uv[0, COCO18_NAMES.index("right_wrist"), 0] > 256, "from behind the right wrist is on the right"
    # from the dancer's left side the far (right) ear and eye are hidden and the wrists overlap in depth
    uv, visible, _ = pose_frames(standing(), view="side")
    shown = {n for n, v in zip(COCO18_NAMES, visible[0]) if v}
    assert {"left_ear", "left_eye", "nose"} <= shown and not {"right_ear", "right_eye"} & shown


def test_face_keypoints_turn_and_bend_with_the_upper_body():
    names = smpl_skeleton().names
    motion = standing(frames=3)
    rotations = motion.rotations.copy()
    rotations[1, names.index("chest"), 1] = np.radians(80)  # the upper body turned to the dancer's left
    rotations[2, names.index("spine"), 0] = np.radians(60)  # bowed forward
    points, _ = coco18(Motion(motion.fps, motion.skeleton, motion.root_translation, rotations))
    nose, neck = COCO18_NAMES.index("nose"), 1
    assert points[0, nose, 2] > points[0, neck, 2] + 0.05, "facing +Z, the nose is in front of the neck"
    assert points[1, nose, 0] > points[0, nose, 0] + 0.05, "turned left, the nose moves to +X"
    assert points[2, nose, 1] < points[0, nose, 1] - 0.03 and points[2, nose, 2] > points[0, nose, 2]


def test_the_camera_follows_a_travelling_dancer():
    motion = standing(frames=90)
    root = motion.root_translation.copy()
    root[:, 0] = np.linspace(0, 4, 90)  # 4 m sideways in 3 s
    uv, visible, _ = pose_frames(Motion(motion.fps, motion.skeleton, root, motion.rotations), view="front")
    neck = uv[:, 1]
    assert ((neck > 0) & (neck < 512)).all() and visible.all(), "the figure stays in the picture"


def test_cli_renders_a_generated_dance(tmp_path, capsys):
    dance = tmp_path / "dance"
    assert main(["generate", "-o", str(dance), "--duration", "3", "--formats", "npz", "-q"]) == 0
    npz = next(dance.glob("*.npz"))
    out = tmp_path / "pose"
    assert main(["render", str(npz), "--pose-images", str(out), "--size", "256x192", "--fps", "10",
                 "--camera", "follow", "-q"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == Motion.load(npz).resample(10).num_frames
    image = np.asarray(Image.open(pngs[len(pngs) // 2]))
    assert image.shape == (192, 256, 3)
    drawn = image.reshape(-1, 3)[image.reshape(-1, 3).any(axis=1)]
    colours = np.array(COLOURS)
    assert len(drawn) > 300, "a figure is drawn"
    assert (np.abs(drawn[:, None] - colours * LIMB_OPACITY).max(-1).min(1) <= 2).mean() > 0.4, \
        "most of the figure is OpenPose's limb colours"
    assert "pose images" in capsys.readouterr().out


@pytest.mark.parametrize("argv, problem", [
    (["--size", "big"], "--size takes WIDTHxHEIGHT"),
    (["--frames", "5:x"], "--frames takes START:STOP"),
    (["--frames", "500:600"], "selects none of the motion's"),
    (["--fps", "0"], "--fps must be positive"),
])
def test_cli_bad_options_are_one_line(tmp_path, capsys, argv, problem):
    npz = tmp_path / "m.npz"
    synthetic_motion(1, 20).save(npz)
    assert main(["render", str(npz), "--pose-images", str(tmp_path / "pose"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and len(err.splitlines()) == 1
    assert not (tmp_path / "pose").exists() and not list(tmp_path.glob(".pose*"))


def test_cli_refuses_a_folder_of_other_files(tmp_path, capsys):
    npz = tmp_path / "m.npz"
    synthetic_motion(1, 20).save(npz)
    (tmp_path / "pose").mkdir()
    (tmp_path / "pose" / "notes.txt").write_text("mine")
    assert main(["render", str(npz), "--pose-images", str(tmp_path / "pose")]) == 2
    assert "holds other files" in capsys.readouterr().err
    assert (tmp_path / "pose" / "notes.txt").read_text() == "mine"
    assert main(["render", str(tmp_path / "m.txt"), "--pose-images", str(tmp_path / "p2")]) == 2
    assert "must be a .bvh or a dancegen .npz" in capsys.readouterr().err
