"""GLB and SMPL-pickle export: structure, the animation's joint positions, the Khronos validator,
the round trip through dancegen's own AIST++ loader, and `dancegen generate --formats`."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
import torch

from dancegen.cli import main
from dancegen.datasets.aist import AIST_FPS, load_motion
from dancegen.errors import UserError
from dancegen.motion import Motion, Skeleton, forward_kinematics, read_bvh, smpl_skeleton
from dancegen.motion.gltf import write_glb
from dancegen.motion.rotations import quaternion_to_matrix
from dancegen.motion.smpl_export import SMPL_FPS, write_smpl

from test_bvh import dance_like
from test_generate import song  # noqa: F401  (fixture; importing also registers the test_sway model)

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / ".cache" / "node" / "node_modules"  # `make gltf-tools` installs the packages here
NODE = shutil.which("node")

VALIDATE_JS = """
const validator = require("gltf-validator");
const bytes = new Uint8Array(require("fs").readFileSync(process.argv[1]));
validator.validateBytes(bytes, {maxIssues: 50}).then(r => console.log(JSON.stringify(r)))
  .catch(e => { console.error(String(e)); process.exit(1); });
"""

# Loads the GLB with three.js's GLTFLoader (in node, no browser), plays its first clip with an
# AnimationMixer and prints the world positions of the named nodes at the given times.
THREE_JS = """
import fs from "fs";
const [modules, path, times, names] = process.argv.slice(1);
const THREE = await import(`file://${modules}/three/build/three.module.js`);
const { GLTFLoader } = await import(`file://${modules}/three/examples/jsm/loaders/GLTFLoader.js`);
const data = fs.readFileSync(path);
new GLTFLoader().parse(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength), "", (gltf) => {
  const mixer = new THREE.AnimationMixer(gltf.scene);
  mixer.clipAction(gltf.animations[0]).play();
  const out = {clips: gltf.animations.length, bones: 0, skinnedMeshes: 0, positions: []};
  gltf.scene.traverse((o) => { out.bones += o.isBone ? 1 : 0; out.skinnedMeshes += o.isSkinnedMesh ? 1 : 0; });
  let now = 0;
  for (const t of JSON.parse(times)) {
    mixer.update(t - now);
    now = t;
    gltf.scene.updateMatrixWorld(true);
    out.positions.push(JSON.parse(names).map((n) => gltf.scene.getObjectByName(n).getWorldPosition(new THREE.Vector3()).toArray()));
  }
  console.log(JSON.stringify(out));
}, (e) => { console.error(String(e)); process.exit(1); });
"""


def run_node(*args: str, module: bool = False) -> str:
    """Run node on `args` with the packages of `make gltf-tools`; skip when either is missing."""
    if NODE is None:
        pytest.skip("node is not installed (make gltf-tools: Debian's nodejs and npm)")
    package = "three" if module else "gltf-validator"
    if not (NODE_MODULES / package).is_dir():
        pytest.skip(f"the npm package {package} is not installed in {NODE_MODULES} (make gltf-tools)")
    flags = ["--input-type=module"] if module else []
    proc = subprocess.run([NODE, *flags, "-e", *args], capture_output=True, text=True, timeout=60,
                          env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def accessor_array(doc: gl.GLTF2, index: int) -> np.ndarray:
    acc = doc.accessors[index]
    view = doc.bufferViews[acc.bufferView]
    dtype = {gl.FLOAT: "<f4", gl.UNSIGNED_SHORT: "<u2", gl.UNSIGNED_INT: "<u4"}[acc.componentType]
    width = {gl.SCALAR: 1, gl.VEC3: 3, gl.VEC4: 4, gl.MAT4: 16}[acc.type]
    start = view.byteOffset + (acc.byteOffset or 0)
    return np.frombuffer(doc.binary_blob(), dtype, acc.count * width, start).reshape(acc.count, width)


def glb_positions(path: Path) -> tuple[gl.GLTF2, np.ndarray]:
    """The GLB's document and its joints' world positions (T, J, 3) at every key, by reading the
    node hierarchy and the animation back and running dancegen's forward kinematics on them."""
    doc = gl.GLTF2.load(str(path))
    joints = doc.skins[0].joints
    parents = [-1] * len(joints)
    for i, j in enumerate(joints):
        for child in doc.nodes[j].children:
            parents[joints.index(child)] = i
    offsets = np.array([doc.nodes[j].translation for j in joints], dtype=np.float32)
    anim = doc.animations[0]
    keys = {(c.target.node, c.target.path): accessor_array(doc, anim.samplers[c.sampler].output) for c in anim.channels}
    quats = np.stack([keys[(j, "rotation")] for j in joints], axis=1)
    root = keys[(joints[0], "translation")] - offsets[0]
    pos, _ = forward_kinematics(quaternion_to_matrix(torch.from_numpy(quats.copy())), torch.from_numpy(root),
                                torch.from_numpy(offsets), parents)
    return doc, pos.numpy()


def test_glb_holds_the_skeleton_animation_and_a_skinned_body(tmp_path: Path):
    motion = dance_like(frames=50, fps=25.0)
    write_glb(motion, tmp_path / "d.glb")
    doc, positions = glb_positions(tmp_path / "d.glb")
    assert [doc.nodes[j].name for j in doc.skins[0].joints] == list(motion.skeleton.names)
    assert np.abs(positions - motion.positions()).max() < 1e-5
    sampler = doc.animations[0].samplers[0]
    assert sampler.interpolation == "LINEAR" and len(doc.animations[0].channels) == 1 + 24
    assert np.allclose(accessor_array(doc, sampler.input)[:, 0], np.arange(50) / 25.0)
    # every joint's inverse bind matrix undoes its rest position, and the body is weighted to the joints
    inverse_bind = accessor_array(doc, doc.skins[0].inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    assert np.allclose(inverse_bind[:, :3, 3], -motion.skeleton.rest_positions(), atol=1e-6)
    (body,) = doc.meshes
    assert [doc.materials[p.material].name for p in body.primitives] == ["trunk", "left", "right"]
    weighted = set()
    for p in body.primitives:
        weighted |= set(accessor_array(doc, p.attributes.JOINTS_0)[:, 0].tolist())
        assert np.all(accessor_array(doc, p.attributes.WEIGHTS_0) == [1, 0, 0, 0])
    leaves = {j for j in range(24) if not motion.skeleton.children(j)} - {motion.skeleton.index("head")}
    assert weighted == set(range(24)) - leaves  # every bone's parent, and the head


def test_glb_rotations_stay_in_one_hemisphere(tmp_path: Path):
    t = np.arange(60) / 30.0
    rot = np.zeros((60, 24, 3))
    rot[:, 0, 1] = 2.5 * t  # the root turns past 180 degrees: the rotation vector flips sides
    write_glb(Motion(30.0, smpl_skeleton(), np.zeros((60, 3)), rot), tmp_path / "turn.glb")
    doc = gl.GLTF2.load(str(tmp_path / "turn.glb"))
    quats = accessor_array(doc, doc.animations[0].samplers[1].output)
    assert np.all(np.sum(quats[1:] * quats[:-1], axis=1) > 0.9)


def test_glb_of_another_skeleton(tmp_path: Path):
    skeleton = Skeleton(("Hips", "Spine", "Head", "LeftArm", "RightArm"), (-1, 0, 1, 1, 1),
                        [[0, 0, 0], [0, 0.3, 0], [0, 0.3, 0], [0.2, 0.2, 0], [-0.2, 0.2, 0]])
    rng = np.random.default_rng(0)
    motion = Motion(24.0, skeleton, rng.normal(size=(10, 3)), rng.normal(size=(10, 5, 3)))
    write_glb(motion, tmp_path / "five.glb")
    _, positions = glb_positions(tmp_path / "five.glb")
    assert np.abs(positions - motion.positions()).max() < 1e-5


def test_glb_passes_the_khronos_validator(tmp_path: Path):
    write_glb(dance_like(frames=40, fps=30.0), tmp_path / "d.glb")
    report = json.loads(run_node(VALIDATE_JS, str(tmp_path / "d.glb")))
    issues = report["issues"]
    assert [issues[k] for k in ("numErrors", "numWarnings", "numInfos", "numHints")] == [0, 0, 0, 0], issues["messages"]
    info = report["info"]
    assert info["animationCount"] == 1 and info["hasSkins"] and info["drawCallCount"] == 3


def test_glb_plays_in_three_js(tmp_path: Path):
    motion = dance_like(frames=60, fps=30.0)
    write_glb(motion, tmp_path / "d.glb")
    frames, between = [0, 13, 30, 58], [5, 24]  # keys, and halfway from these keys to the next
    times = [f / motion.fps for f in frames] + [(f + 0.5) / motion.fps for f in between]
    names = ["head", "lwrist", "rankle"]
    out = json.loads(run_node(THREE_JS, str(NODE_MODULES), str(tmp_path / "d.glb"), json.dumps(times),
                              json.dumps(names), module=True))
    assert out["clips"] == 1 and out["bones"] == 24 and out["skinnedMeshes"] == 3
    halfway = motion.resample(2 * motion.fps).positions()[[2 * f + 1 for f in between]]  # slerp, as LINEAR is
    expected = np.concatenate([motion.positions()[frames], halfway])[:, [motion.skeleton.index(n) for n in names]]
    error = np.abs(np.array(out["positions"]) - expected).max()
    assert error < 1e-3, f"three.js puts the end-effectors {error * 1000:.3f} mm from dancegen's FK"


@pytest.mark.parametrize("fps", [30.0, 60.0, 20.0])
def test_smpl_pickle_round_trips_through_the_aist_loader(tmp_path: Path, fps: float):
    motion = dance_like(frames=45, fps=fps)
    write_smpl(motion, tmp_path / "d.smpl.pkl")
    with open(tmp_path / "d.smpl.pkl", "rb") as f:
        raw = pickle.load(f)  # our own file, in a test: plain numpy arrays
    assert sorted(raw) == ["smpl_poses", "smpl_scaling", "smpl_trans"]
    assert raw["smpl_poses"].shape[1] == 72 and raw["smpl_scaling"].shape == (1,)
    loaded = load_motion(tmp_path / "d.smpl.pkl")  # through the safe pickle reader
    assert SMPL_FPS == AIST_FPS == loaded.fps
    step = int(SMPL_FPS / fps)  # these rates divide 60: every original frame is a frame of the file
    error = np.abs(loaded.positions()[::step] - motion.positions()).max()
    assert error < 1e-3, f"{error * 1000:.3f} mm"


def test_smpl_pickle_puts_a_longer_legged_dancer_on_smpls_legs_feet_on_the_floor(tmp_path: Path):
    """A dance on legs 15 % longer (the default model's Latin body) is written on SMPL's neutral body
    with its root translation scaled by the legs' ratio: standing feet stay on the floor."""
    offsets = smpl_skeleton().offsets.copy()
    offsets[[1, 2, 4, 5, 7, 8]] *= 1.15
    long_legs = Skeleton(smpl_skeleton().names, smpl_skeleton().parents, offsets)
    rest = Motion(60.0, long_legs, np.zeros((1, 3)), np.zeros((1, 24, 3))).positions()[0]
    frames = 30
    root = np.stack([np.linspace(0, 1.5, frames), np.full(frames, -rest[[7, 8, 10, 11], 1].min()),
                     np.zeros(frames)], -1)  # walking 1.5 m along x, the lowest foot on the floor
    write_smpl(Motion(60.0, long_legs, root, np.zeros((frames, 24, 3))), tmp_path / "d.smpl.pkl")
    loaded = load_motion(tmp_path / "d.smpl.pkl")
    assert np.allclose(loaded.skeleton.offsets, smpl_skeleton().offsets)
    feet = loaded.positions()[:, [7, 8, 10, 11], 1].min(1)
    assert np.abs(feet).max() < 0.01, f"the feet {100 * np.abs(feet).max():.1f} cm off the floor"
    assert abs(loaded.root_translation[-1, 0] - 1.5 / 1.15) < 0.02  # the same strides, in legs


def numpy1_python() -> str | None:
    """A Python with numpy 1.x (Debian's python3 with python3-numpy, which `make blender` installs)."""
    probe = "import numpy; assert numpy.__version__.startswith('1.')"
    for python in ("/usr/bin/python3", shutil.which("python3")):
        if python and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
            return python
    return None


def test_smpl_pickle_loads_with_numpy_1(tmp_path: Path):
    """SMPL tools often run numpy 1.x, which cannot import the numpy._core that numpy 2 pickles name."""
    python = numpy1_python()
    if python is None:
        pytest.skip("no Python with numpy 1.x here (apt-get install python3-numpy)")
    write_smpl(dance_like(frames=4, fps=60.0), tmp_path / "d.smpl.pkl")
    code = "import pickle, sys; d = pickle.load(open(sys.argv[1], 'rb')); print(d['smpl_poses'].shape, d['smpl_scaling'][0])"
    proc = subprocess.run([python, "-c", code, str(tmp_path / "d.smpl.pkl")], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.split() == ["(4,", "72)", "100.0"], proc.stderr


def test_exports_refuse_what_they_cannot_write(tmp_path: Path):
    skeleton = Skeleton(("a", "b"), (-1, 0), [[0, 0, 0], [0, 1, 0]])
    motion = Motion(30.0, skeleton, np.zeros((5, 3)), np.zeros((5, 2, 3)))
    with pytest.raises(UserError, match="d.smpl.pkl: SMPL parameters need the SMPL 24-joint skeleton"):
        write_smpl(motion, tmp_path / "d.smpl.pkl")
    empty = dance_like(frames=2)[:0]
    with pytest.raises(UserError, match="e.smpl.pkl: the motion has no frames"):
        write_smpl(empty, tmp_path / "e.smpl.pkl")
    with pytest.raises(UserError, match="e.glb: the motion has no frames"):
        write_glb(empty, tmp_path / "e.glb")
    assert list(tmp_path.iterdir()) == []


def test_generate_writes_glb_and_smpl(song: Path, tmp_path: Path, capsys):  # noqa: F811
    out = tmp_path / "out"
    code = main(["generate", str(song), "-o", str(out), "--model", "test_sway", "-q", "--formats", "bvh,glb,smpl"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["my song.bvh", "my song.glb", "my song.smpl.pkl"]
    bvh = read_bvh(out / "my song.bvh")
    _, glb = glb_positions(out / "my song.glb")
    assert np.abs(glb - bvh.positions()).max() < 1e-4
    smpl = load_motion(out / "my song.smpl.pkl")
    assert np.abs(smpl.positions()[::2] - bvh.positions()).max() < 1e-3
