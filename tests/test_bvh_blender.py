"""dancegen's BVH files import in Blender with the right frames and joint positions.

Runs Debian's `blender` headless (`apt-get install -y --no-install-recommends blender`); skipped when
it is not installed. Blender's importer, with its defaults Forward -Z / Up Y, turns the BVH's
Y-up (x, y, z) into its Z-up (x, -z, y), and multiplies file units by `global_scale`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from dancegen.motion import write_bvh

from test_bvh import dance_like

BLENDER = shutil.which("blender")
pytestmark = pytest.mark.skipif(
    BLENDER is None, reason="blender is not installed (apt-get install -y --no-install-recommends blender)"
)

MARKER = "DANCEGEN_JSON "

# Runs inside Blender: import each file, print its frame range, scene fps and bone head positions.
BLENDER_SCRIPT = f"""
import builtins, json, sys
import bpy
import io_anim_bvh.import_bvh as importer
# Debian's Blender 3.4 runs on Python 3.11, which no longer accepts the 'rU' mode its BVH
# importer opens files with; strip the 'U' (newer Blender opens with 'r').
importer.open = lambda file, mode="r", *a, **k: builtins.open(file, mode.replace("U", ""), *a, **k)
jobs = json.loads(sys.argv[sys.argv.index("--") + 1])
results = []
for job in jobs:
    bpy.ops.import_anim.bvh(filepath=job["path"], global_scale=job["global_scale"], axis_forward="-Z",
                            axis_up="Y", update_scene_fps=True)
    ob = bpy.context.view_layer.objects.active
    scene = bpy.context.scene
    out = {{"frame_range": list(ob.animation_data.action.frame_range),
            "fps": scene.render.fps / scene.render.fps_base, "positions": {{}}}}
    for frame in job["frames"]:
        scene.frame_set(frame + 1)  # the importer keys BVH frame i at Blender frame 1 + i
        out["positions"][str(frame)] = {{b.name: list(ob.matrix_world @ b.head) for b in ob.pose.bones}}
    results.append(out)
print({MARKER!r} + json.dumps(results))
"""


def blender_import(jobs: list[dict], script: str = BLENDER_SCRIPT) -> list[dict]:
    """Run `script` in headless Blender with `jobs` as JSON after "--"; what it printed after MARKER."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [BLENDER, "-b", "--factory-startup", "--python-exit-code", "1", "--python-expr", script,
         "--", json.dumps(jobs)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    assert proc.returncode == 0 and lines, f"blender failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len(MARKER):])


def test_blender_imports_frames_and_joint_positions(tmp_path):
    motion = dance_like(frames=60, fps=30.0)
    frames = [0, 17, 25, 59]  # 17: a frame at the Z-X-Y Euler singularity
    write_bvh(motion, tmp_path / "cm.bvh")  # centimetres, imported with Scale 0.01
    write_bvh(motion, tmp_path / "m.bvh", scale=1.0)  # metres, imported with Scale 1
    results = blender_import([
        {"path": str(tmp_path / "cm.bvh"), "global_scale": 0.01, "frames": frames},
        {"path": str(tmp_path / "m.bvh"), "global_scale": 1.0, "frames": frames},
    ])
    ours = motion.positions()
    blender_axes = np.stack([ours[..., 0], -ours[..., 2], ours[..., 1]], axis=-1)  # Y up -> Blender's Z up
    for result in results:
        assert result["frame_range"] == [1.0, 60.0]
        assert result["fps"] == pytest.approx(30.0)
        for frame in frames:
            bones = result["positions"][str(frame)]
            assert set(bones) == set(motion.skeleton.names)
            theirs = np.array([bones[name] for name in motion.skeleton.names])
            error = np.abs(theirs - blender_axes[frame]).max()
            assert error < 1e-3, f"frame {frame}: Blender's joints differ from dancegen's FK by {error * 1000:.3f} mm"
