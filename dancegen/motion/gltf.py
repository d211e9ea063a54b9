"""glTF 2.0 binary (GLB) export: `write_glb(motion, path)`, a skinned figure that dances as-is.

The file holds, written with pygltflib (a maintained glTF library; only the geometry of the body
is made here):

- the skeleton as a node hierarchy, one node per joint named after it; each node's translation
  is its rest offset, the root's its rest offset plus the motion's root translation;
- one animation "dance": the root node's translation and every joint node's rotation (unit
  quaternions x, y, z, w, kept in one hemisphere over time), keyed at frame k / fps seconds with
  LINEAR interpolation (slerp for rotations);
- a skin over those nodes (inverse bind matrices of the rest pose) and a mesh on it: a capsule
  per bone and a sphere for the head, each vertex weighted wholly to the bone's parent joint, in
  three materials (trunk, the body's left, its right) with the thicknesses and colours of the
  MP4 and HTML figure (`dancegen.render.figure.Figure`).

Units and axes need no conversion: glTF is metres, Y up, and an asset faces +Z, as dancegen's
canonical skeleton does. Blender's glTF importer turns Y-up (x, y, z) into its Z-up (x, -z, y).
Any `Skeleton` works, not only SMPL's. The file is written atomically.
"""

from __future__ import annotations

import os

import numpy as np
import pygltflib as gl
from scipy.spatial.transform import Rotation

from ..errors import UserError
from ..io import atomic_path
from .motion import Motion

__all__ = ["write_glb", "joint_quaternions"]

_SEGMENTS = 12  # vertices around a capsule
_RINGS = 4  # latitude rings per capsule end (pole excluded)


def joint_quaternions(motion: Motion) -> np.ndarray:
    """(T, J, 4) unit quaternions (x, y, z, w) of the joints' local rotations, each joint's kept in
    one hemisphere from frame to frame so that interpolating between keys takes the short way."""
    t, j = motion.num_frames, motion.skeleton.num_joints
    q = Rotation.from_rotvec(motion.rotations.reshape(-1, 3).astype(np.float64)).as_quat().reshape(t, j, 4)
    flips = np.cumsum(np.sum(q[1:] * q[:-1], axis=-1) < 0, axis=0) % 2  # (T-1, J): sign changes so far
    q[1:][flips == 1] *= -1
    return q.astype(np.float32)


def write_glb(motion: Motion, path: str | os.PathLike) -> None:
    """Write `motion` as a GLB: skeleton nodes, their animation and a skinned body; atomically."""
    from ..render.figure import SIDE_COLOURS, Figure

    if motion.num_frames == 0:
        raise UserError(path, "the motion has no frames to write")
    skeleton = motion.skeleton
    figure = Figure.of(skeleton)
    rest = skeleton.rest_positions().astype(np.float64)
    blob = _Blob()
    doc = gl.GLTF2(asset=gl.Asset(generator="dancegen", version="2.0"), scene=0)

    joints = list(range(skeleton.num_joints))
    for j, name in enumerate(skeleton.names):
        doc.nodes.append(gl.Node(name=name, translation=[float(v) for v in skeleton.offsets[j]],
                                 children=skeleton.children(j)))
    mesh_node = len(doc.nodes)
    doc.nodes.append(gl.Node(name="body", mesh=0, skin=0))
    doc.scenes.append(gl.Scene(name="dance", nodes=[0, mesh_node]))

    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (len(joints), 1, 1))
    inverse_bind[:, :3, 3] = -rest  # rest pose: no rotations, so each joint's bind matrix is a translation
    doc.skins.append(gl.Skin(name="skeleton", joints=joints, skeleton=0,
                             inverseBindMatrices=blob.accessor(doc, inverse_bind.transpose(0, 2, 1), gl.MAT4)))

    parts: list[list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]] = [[] for _ in SIDE_COLOURS]
    for (p, j), side, radius in zip(figure.bones, figure.sides, figure.radii):
        parts[side].append((*_capsule(rest[p], rest[j], float(radius)), p))
    if figure.head is not None:
        up = rest[figure.head] - rest[figure.neck] if figure.neck is not None else np.array([0.0, 1.0, 0.0])
        up = up / max(np.linalg.norm(up), 1e-9)
        centre = rest[figure.head] + 0.6 * figure.head_radius * up
        parts[0].append((*_capsule(centre, centre, figure.head_radius, axis=up), figure.head))
    primitives = []
    for side, pieces in enumerate(parts):
        if not pieces:
            continue
        doc.materials.append(gl.Material(
            name=("trunk", "left", "right")[side], doubleSided=False,
            pbrMetallicRoughness=gl.PbrMetallicRoughness(
                baseColorFactor=[*(_srgb_to_linear(SIDE_COLOURS[side] / 255.0)), 1.0],
                metallicFactor=0.0, roughnessFactor=0.8)))
        primitives.append(_primitive(doc, blob, pieces, len(doc.materials) - 1))
    doc.meshes.append(gl.Mesh(name="body", primitives=primitives))

    _animation(doc, blob, motion)
    doc.buffers.append(gl.Buffer(byteLength=len(blob.data)))
    doc.set_binary_blob(bytes(blob.data))
    with atomic_path(path, suffix=".glb") as tmp:
        tmp.write_bytes(b"".join(doc.save_to_bytes()))


def _animation(doc: gl.GLTF2, blob: "_Blob", motion: Motion) -> None:
    times = (np.arange(motion.num_frames, dtype=np.float64) / motion.fps).astype(np.float32)
    time_accessor = blob.accessor(doc, times, gl.SCALAR, bounds=True)
    root = motion.root_translation + motion.skeleton.offsets[0]
    quats = joint_quaternions(motion)
    channels = [(0, "translation", blob.accessor(doc, root, gl.VEC3))]
    channels += [(j, "rotation", blob.accessor(doc, quats[:, j], gl.VEC4)) for j in range(motion.skeleton.num_joints)]
    samplers, targets = [], []
    for node, path, output in channels:
        targets.append(gl.AnimationChannel(sampler=len(samplers), target=gl.AnimationChannelTarget(node=node, path=path)))
        samplers.append(gl.AnimationSampler(input=time_accessor, output=output, interpolation=gl.ANIM_LINEAR))
    doc.animations.append(gl.Animation(name="dance", channels=targets, samplers=samplers))


def _primitive(doc: gl.GLTF2, blob: "_Blob", pieces, material: int) -> gl.Primitive:
    positions, normals, triangles, weights_to = [], [], [], []
    count = 0
    for verts, norms, tris, joint in pieces:
        positions.append(verts)
        normals.append(norms)
        triangles.append(tris + count)
        weights_to.append(np.full(len(verts), joint))
        count += len(verts)
    positions = np.concatenate(positions).astype(np.float32)
    joints = np.zeros((count, 4), dtype=np.uint16)
    joints[:, 0] = np.concatenate(weights_to)
    weights = np.zeros((count, 4), dtype=np.float32)
    weights[:, 0] = 1.0
    attributes = gl.Attributes(
        POSITION=blob.accessor(doc, positions, gl.VEC3, bounds=True, target=gl.ARRAY_BUFFER),
        NORMAL=blob.accessor(doc, np.concatenate(normals).astype(np.float32), gl.VEC3, target=gl.ARRAY_BUFFER),
        JOINTS_0=blob.accessor(doc, joints, gl.VEC4, target=gl.ARRAY_BUFFER),
        WEIGHTS_0=blob.accessor(doc, weights, gl.VEC4, target=gl.ARRAY_BUFFER),
    )
    index_type = np.uint16 if count <= 65535 else np.uint32
    indices = blob.accessor(doc, np.concatenate(triangles).reshape(-1).astype(index_type), gl.SCALAR,
                            target=gl.ELEMENT_ARRAY_BUFFER)
    return gl.Primitive(attributes=attributes, indices=indices, material=material, mode=gl.TRIANGLES)


def _capsule(a: np.ndarray, b: np.ndarray, radius: float, axis: np.ndarray | None = None):
    """Vertices, outward normals and triangles (outward, counter-clockwise) of a capsule from `a`
    to `b`; a sphere about `a` when they coincide (its poles on `axis`)."""
    length = float(np.linalg.norm(b - a))
    axis = (b - a) / length if length > 1e-9 else np.asarray(axis, dtype=np.float64)
    u = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    theta = 2 * np.pi * np.arange(_SEGMENTS) / _SEGMENTS
    around = np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * v  # (S, 3)
    step = (np.pi / 2) / _RINGS
    rings = [(a, -np.pi / 2 + k * step) for k in range(1, _RINGS + 1)]  # towards a's equator
    rings += [(b, k * step) for k in range(_RINGS)]  # from b's equator
    normals = [-axis[None]]
    normals += [np.cos(phi) * around + np.sin(phi) * axis for _, phi in rings]
    normals.append(axis[None])
    centres = [a[None]] + [np.broadcast_to(c, (_SEGMENTS, 3)) for c, _ in rings] + [b[None]]
    normals_flat = np.concatenate(normals)
    verts = np.concatenate(centres) + radius * normals_flat
    s, last = _SEGMENTS, 1 + _SEGMENTS * len(rings)
    nxt = (np.arange(s) + 1) % s
    tris = [np.stack([np.zeros(s, int), 1 + nxt, 1 + np.arange(s)], 1)]  # pole at a
    for r in range(len(rings) - 1):
        lo, hi = 1 + r * s, 1 + (r + 1) * s
        i = np.arange(s)
        tris.append(np.stack([lo + i, lo + nxt, hi + nxt], 1))
        tris.append(np.stack([lo + i, hi + nxt, hi + i], 1))
    lo = 1 + (len(rings) - 1) * s
    tris.append(np.stack([lo + np.arange(s), lo + nxt, np.full(s, last)], 1))  # pole at b
    tris = np.concatenate(tris)
    # orient every triangle outward (its face normal along the vertices' normals)
    face = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    inward = np.einsum("ij,ij->i", face, normals_flat[tris].sum(1)) < 0
    tris[inward] = tris[inward][:, ::-1]
    return verts, normals_flat, tris


def _srgb_to_linear(c: np.ndarray) -> list[float]:
    """glTF's baseColorFactor is linear; the figure's colours are sRGB."""
    c = np.asarray(c, dtype=np.float64)
    return [float(x) for x in np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)]


class _Blob:
    """The GLB's binary chunk: arrays appended as buffer views (4-byte aligned) with accessors."""

    _TYPES = {np.dtype(np.float32): gl.FLOAT, np.dtype(np.uint16): gl.UNSIGNED_SHORT,
              np.dtype(np.uint32): gl.UNSIGNED_INT}

    def __init__(self):
        self.data = bytearray()

    def accessor(self, doc: gl.GLTF2, array: np.ndarray, kind: str, *, bounds: bool = False,
                 target: int | None = None) -> int:
        array = np.ascontiguousarray(array)
        width = {gl.SCALAR: 1, gl.VEC3: 3, gl.VEC4: 4, gl.MAT4: 16}[kind]
        count = array.size // width
        self.data.extend(b"\0" * (-len(self.data) % 4))
        doc.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(self.data), byteLength=array.nbytes,
                                             target=target))
        self.data.extend(array.astype(array.dtype.newbyteorder("<")).tobytes())
        flat = array.reshape(count, width)
        doc.accessors.append(gl.Accessor(
            bufferView=len(doc.bufferViews) - 1, componentType=self._TYPES[array.dtype], count=count, type=kind,
            min=flat.min(0).tolist() if bounds else None, max=flat.max(0).tolist() if bounds else None))
        return len(doc.accessors) - 1
