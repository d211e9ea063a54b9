"""The BVH and GLB that `dancegen generate` writes, imported into real Blender: joints, frames and
end-effector positions match dancegen's own forward kinematics, and the GLB's body deforms with it.

Runs Debian's `blender` headless (`make blender` installs it with python3-numpy, which its glTF
importer needs); skipped when it is not installed. Axes: both of Blender's importers turn Y-up
(x, y, z) into Blender's Z-up (x, -z, y). Frames: the BVH importer keys file frame i at Blender
frame 1 + i; the glTF importer keys time t at frame t * scene fps, so with the scene at the
dance's fps, dance frame i is Blender frame i.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
import torch
from scipy.spatial import cKDTree

from dancegen.generation import Generated, write_outputs
from dancegen.motion import Motion, forward_kinematics
from dancegen.motion.rotations import axis_angle_to_matrix

from test_bvh import dance_like
from test_bvh_blender import BLENDER, MARKER, blender_import
from test_gltf import accessor_array

pytestmark = pytest.mark.skipif(
    BLENDER is None, reason="blender is not installed (make blender: Debian's blender and python3-numpy)"
)

END_EFFECTORS = ("head", "lwrist", "rankle")
FRAMES = [0, 17, 25, 59]  # 17 and 25: the BVH's Z-X-Y Euler singularity (see test_bvh.dance_like)
FPS = 30

# Runs inside Blender: each job imports one file into an empty scene and reports its armature's
# bones, the action's frame range and, at each asked frame, the bones' world head positions and
# (for a GLB) the deformed body's vertices.
BLENDER_SCRIPT = f"""
import builtins, json, sys, warnings
import bpy
import numpy
import io_anim_bvh.import_bvh as bvh_importer
# Debian's Blender 3.4 runs on the system's Python 3.11 and numpy 1.24: its BVH importer opens
# files in mode 'rU', which Python 3.11 refuses, and its glTF importer names numpy.bool, which
# numpy 1.24 removed. Shim both (Blender's own builds bundle an older numpy and open with 'r').
bvh_importer.open = lambda file, mode="r", *a, **k: builtins.open(file, mode.replace("U", ""), *a, **k)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if not hasattr(numpy, "bool"):
        numpy.bool = bool
results = []
for job in json.loads(sys.argv[sys.argv.index("--") + 1]):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = job["fps"], 1.0
    if job["path"].endswith(".bvh"):
        bpy.ops.import_anim.bvh(filepath=job["path"], global_scale=0.01, axis_forward="-Z", axis_up="Y")
        first = 1
    else:
        bpy.ops.import_scene.gltf(filepath=job["path"])
        first = 0
    arm = next(o for o in scene.objects if o.type == "ARMATURE")
    body = next((o for o in scene.objects if o.type == "MESH"), None)
    out = {{"bones": [b.name for b in arm.pose.bones], "frame_range": list(arm.animation_data.action.frame_range),
            "first": first, "positions": {{}}, "vertices": {{}}}}
    for frame in job["frames"]:
        scene.frame_set(first + frame)
        out["positions"][str(frame)] = {{b.name: list(arm.matrix_world @ b.head) for b in arm.pose.bones}}
        if body is not None:
            mesh = body.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
            out["vertices"][str(frame)] = [list(body.matrix_world @ v.co) for v in mesh.vertices]
    results.append(out)
print({MARKER!r} + json.dumps(results))
"""


def to_blender(points: np.ndarray) -> np.ndarray:
    """Y-up (x, y, z) as Blender's Z-up (x, -z, y)."""
    return np.stack([points[..., 0], -points[..., 2], points[..., 1]], axis=-1)


def skinned_body(path: Path, motion: Motion) -> np.ndarray:
    """The GLB body's vertices (T, V, 3) as dancegen's forward kinematics moves them: each vertex
    rigidly with the joint it is weighted to."""
    doc = gl.GLTF2.load(str(path))
    rest = motion.skeleton.rest_positions()
    with torch.no_grad():
        positions, world = forward_kinematics(axis_angle_to_matrix(torch.from_numpy(motion.rotations)),
                                              torch.from_numpy(motion.root_translation),
                                              torch.from_numpy(motion.skeleton.offsets), motion.skeleton.parents)
    positions, world = positions.numpy(), world.numpy()
    parts = []
    for p in doc.meshes[0].primitives:
        verts = accessor_array(doc, p.attributes.POSITION)
        joint = accessor_array(doc, p.attributes.JOINTS_0)[:, 0].astype(int)
        parts.append(np.einsum("tvij,vj->tvi", world[:, joint], verts - rest[joint]) + positions[:, joint])
    return np.concatenate(parts, axis=1)


def test_blender_imports_the_generated_bvh_and_glb(tmp_path: Path):
    motion = dance_like(frames=60, fps=FPS)
    bvh, glb = write_outputs(Generated(motion, Path("dance.wav"), 0.0, None), tmp_path, ("bvh", "glb"), progress=False)
    results = blender_import([{"path": str(p), "fps": FPS, "frames": FRAMES} for p in (bvh, glb)], BLENDER_SCRIPT)
    ours = to_blender(motion.positions())
    body = to_blender(skinned_body(glb, motion))
    for path, result in zip((bvh, glb), results):
        assert sorted(result["bones"]) == sorted(motion.skeleton.names), path.name
        first = result["first"]
        assert result["frame_range"] == [first, first + motion.num_frames - 1], path.name
        for frame in FRAMES:
            bones = result["positions"][str(frame)]
            theirs = np.array([bones[name] for name in END_EFFECTORS])
            expected = ours[frame, [motion.skeleton.index(name) for name in END_EFFECTORS]]
            error = np.abs(theirs - expected).max()
            assert error < 1e-3, f"{path.name} frame {frame}: Blender's end-effectors are {error * 1000:.3f} mm off"
        if path == glb:  # the body follows: every deformed vertex where dancegen's skinning puts one
            for frame in FRAMES:
                verts = np.array(result["vertices"][str(frame)])
                assert verts.shape == body[frame].shape
                gap = max(cKDTree(body[frame]).query(verts)[0].max(), cKDTree(verts).query(body[frame])[0].max())
                assert gap < 1e-3, f"frame {frame}: Blender's deformed body is {gap * 1000:.3f} mm off"
