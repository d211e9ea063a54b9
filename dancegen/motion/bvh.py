"""BVH (Biovision Hierarchy) files: `write_bvh(motion, path)` and `read_bvh(path) -> Motion`.

Units. BVH has no unit field, so both functions take `scale`, the number of file units per
metre: 100 (the default) means the file is in centimetres, which is what Blender, MotionBuilder
and most mocap BVH files use; 1 means metres. `read_bvh` divides by `scale`, so a file written
with some scale and read back with the same scale gives the same motion in metres. In Blender,
import a centimetre file with Scale 0.01 (`bpy.ops.import_anim.bvh(global_scale=0.01)`) to get
metres, with the default Forward -Z / Up Y: Blender then shows the dancer Z up, BVH (x, y, z)
at Blender (x, -z, y).

Axes. Files are taken as they are (no axis conversion): like dancegen, BVH is Y up by
convention. dancegen's canonical skeleton faces +Z with the body's left on +X.

Writing: every joint of the motion's skeleton becomes a BVH joint with its rest offset; the root
has 6 channels `Xposition Yposition Zposition Zrotation Xrotation Yrotation`, the other joints
3 channels `Zrotation Xrotation Yrotation` (intrinsic Z, then X, then Y: R = Rz Rx Ry, the
common BVH order). A joint with no children gets an `End Site` half its own bone's length
further along the same direction (cosmetic: it gives the leaf bone a length in viewers).
Euler angles come from `dancegen.motion.rotations` (roma's algorithm). The file is written atomically.

Reading: any channel order on any joint, any subset of the six channels per joint, `End Site`s
(dropped: they carry no motion, so they are not joints of the returned skeleton), CRLF line
endings. Semantics follow Blender's importer: position channels *replace* the joint's OFFSET
(the root's world position is its position channels). The returned `Motion` keeps the file's
skeleton: root offset = the root's OFFSET, root translation = position channels minus it.
`Motion` has a rigid skeleton, so position channels on a non-root joint become its rest offset
(their mean over the frames); a `UserWarning` says so when they vary by more than 1 mm.
`fps` is 1 / Frame Time, snapped to a whole number when Frame Time equals 1/n to the precision
it was written with (0.033333 -> 30 fps, 0.033367 -> 29.97 fps).

Bad files (missing, empty, no HIERARCHY or MOTION section, bad channel names, a frame with the
wrong number of values, non-numbers, NaN or infinite values, truncated, a Frames count that
disagrees with the data) raise `UserError` naming the file, the line and the problem.

Written by hand, deliberately: the PyPI parsers are either unmaintained (`bvh` 0.3, 2017) or
build their own transform-object graph on extra dependencies (`bvhio` on PyGLM) and do not report
bad files as one clear line; a BVH tokenizer is ~150 lines, and frames parse with numpy.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import UserError, require_file
from ..io import atomic_path
from .motion import Motion
from .rotations import axis_angle_to_matrix, euler_to_matrix, matrix_to_axis_angle, matrix_to_euler
from .skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS, Skeleton

__all__ = ["read_bvh", "write_bvh", "CENTIMETRES", "METRES"]

CENTIMETRES = 100.0  # file units per metre
METRES = 1.0

_ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
_JOINT_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
_EULER_ORDER = "ZXY"  # matches the rotation channels above: R = Rz @ Rx @ Ry
_CHANNEL_NAMES = {f"{a}{k}".lower(): (a, k) for a in "XYZ" for k in ("position", "rotation")}


# --------------------------------------------------------------------------------------------
# Writing


def write_bvh(motion: Motion, path: str | os.PathLike, *, scale: float = CENTIMETRES, decimals: int = 6) -> None:
    """Write `motion` as a BVH file at `path`, atomically.

    scale: file units per metre (100: centimetres, the default; 1: metres).
    decimals: digits after the decimal point for offsets, positions and angles (degrees).
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if not (np.isfinite(motion.rotations).all() and np.isfinite(motion.root_translation).all()):
        raise ValueError("cannot write a motion holding NaN or infinite values")
    skeleton = motion.skeleton
    offsets = skeleton.offsets.astype(np.float64)
    names = [_bvh_name(n, j) for j, n in enumerate(skeleton.names)]
    num = f"{{:.{decimals}f}}"

    lines = ["HIERARCHY"]

    def joint(j: int, depth: int) -> None:
        pad = "\t" * depth
        keyword = "ROOT" if skeleton.parents[j] < 0 else "JOINT"
        channels = _ROOT_CHANNELS if skeleton.parents[j] < 0 else _JOINT_CHANNELS
        lines.append(f"{pad}{keyword} {names[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}\tOFFSET " + " ".join(num.format(v * scale) for v in offsets[j]))
        lines.append(f"{pad}\tCHANNELS {len(channels)} " + " ".join(channels))
        children = skeleton.children(j)
        for c in children:
            joint(c, depth + 1)
        if not children:
            end = offsets[j] * 0.5 if np.linalg.norm(offsets[j]) > 1e-6 else np.array([0.0, 0.05, 0.0])
            lines.append(f"{pad}\tEnd Site")
            lines.append(f"{pad}\t{{")
            lines.append(f"{pad}\t\tOFFSET " + " ".join(num.format(v * scale) for v in end))
            lines.append(f"{pad}\t}}")
        lines.append(f"{pad}}}")

    joint(0, 0)  # a Skeleton has one root, joint 0, and lists parents before children

    frames = _frame_values(motion, scale)
    lines += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / motion.fps:.10g}"]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
            if len(frames):
                np.savetxt(f, frames, fmt=f"%.{decimals}f", delimiter=" ")


def _bvh_name(name: str, j: int) -> str:
    """A joint name BVH readers accept: no whitespace or braces."""
    clean = "".join("_" if (ch.isspace() or ch in "{}") else ch for ch in name)
    return clean or f"joint{j}"


def _frame_values(motion: Motion, scale: float, chunk: int = 4096) -> np.ndarray:
    """(T, 6 + 3 (J-1)) channel values in the order the hierarchy declares them (depth first).
    Rotations convert `chunk` frames at a time: an hour's (T, J, 3, 3) matrices would hold gigabytes."""
    skeleton = motion.skeleton
    rotations = motion.rotations.astype(np.float64)
    euler = np.concatenate([  # (T, J, 3) as Z, X, Y
        matrix_to_euler(axis_angle_to_matrix(torch.from_numpy(rotations[i:i + chunk])), _EULER_ORDER,
                        degrees=True).numpy() for i in range(0, len(rotations), chunk)
    ]) if len(rotations) else np.zeros((0, skeleton.num_joints, 3))
    root_position = (motion.root_translation.astype(np.float64) + skeleton.offsets[0]) * scale
    columns = []
    for j in _depth_first(skeleton):
        if skeleton.parents[j] < 0:
            columns.append(root_position)
        columns.append(euler[:, j])
    return np.concatenate(columns, axis=1)


def _depth_first(skeleton: Skeleton) -> list[int]:
    order, stack = [], [0]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(skeleton.children(j)))
    return order


# --------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Joint:
    name: str
    parent: int
    line: int
    offset: np.ndarray | None = None
    channels: list[tuple[str, str]] = field(default_factory=list)  # (axis, "position"|"rotation")
    first_column: int = 0


class _Tokens:
    """Whitespace tokens of the HIERARCHY section, each with its line number."""

    def __init__(self, path: Path, lines: list[str], first_line: int):
        self.path = path
        self.items: list[tuple[str, int]] = []
        for n, line in enumerate(lines, first_line):
            for tok in line.replace("{", " { ").replace("}", " } ").split():
                self.items.append((tok, n))
        self.pos = 0
        self.last_line = first_line + max(len(lines) - 1, 0)

    def error(self, problem: str, line: int | None = None) -> UserError:
        line = self.line if line is None else line
        return UserError(self.path, f"line {line}: {problem}")

    @property
    def line(self) -> int:
        return self.items[self.pos][1] if self.pos < len(self.items) else self.last_line

    def peek(self) -> str | None:
        return self.items[self.pos][0] if self.pos < len(self.items) else None

    def next(self, what: str) -> str:
        if self.pos >= len(self.items):
            raise self.error(f"HIERARCHY ends early: expected {what} (truncated file?)")
        tok = self.items[self.pos][0]
        self.pos += 1
        return tok

    def expect(self, word: str) -> None:
        tok = self.next(repr(word))
        if tok.lower() != word.lower():
            self.pos -= 1
            raise self.error(f"expected {word!r}, found {tok!r}")

    def number(self, what: str) -> float:
        tok = self.next(what)
        try:
            value = float(tok)
        except ValueError:
            self.pos -= 1
            raise self.error(f"expected a number for {what}, found {tok!r}") from None
        if not np.isfinite(value):
            self.pos -= 1
            raise self.error(f"{what} is {tok}, not a finite number")
        return value


def _parse_hierarchy(tokens: _Tokens) -> list[_Joint]:
    joints: list[_Joint] = []

    def parse_joint(parent: int) -> None:
        line = tokens.line
        name_parts = []
        while tokens.peek() not in (None, "{"):
            name_parts.append(tokens.next("a joint name"))
        if not name_parts:
            raise tokens.error("a joint has no name")
        tokens.expect("{")
        me = _Joint(" ".join(name_parts), parent, line)
        joints.append(me)
        index = len(joints) - 1
        while True:
            tok = tokens.next(f"'}}' closing joint {me.name!r}")
            key = tok.lower()
            if key == "}":
                break
            if key == "offset":
                me.offset = np.array([tokens.number(f"the OFFSET of {me.name!r}") for _ in range(3)])
            elif key == "channels":
                at = tokens.line
                count_tok = tokens.next("the channel count")
                if not count_tok.isdigit() or int(count_tok) > 6:
                    raise tokens.error(f"joint {me.name!r}: bad channel count {count_tok!r} (0 to 6)", at)
                for _ in range(int(count_tok)):
                    ch = tokens.next(f"a channel name of {me.name!r}")
                    if ch.lower() not in _CHANNEL_NAMES:
                        raise tokens.error(
                            f"joint {me.name!r}: unknown channel {ch!r} "
                            "(expected Xposition Yposition Zposition Xrotation Yrotation Zrotation)"
                        )
                    if _CHANNEL_NAMES[ch.lower()] in me.channels:
                        raise tokens.error(f"joint {me.name!r}: channel {ch!r} listed twice")
                    me.channels.append(_CHANNEL_NAMES[ch.lower()])
            elif key == "joint":
                parse_joint(index)
            elif key == "end":
                # "End Site" (some files add a name after it): an end effector, not a joint.
                while tokens.peek() not in (None, "{"):
                    tokens.next("'{'")
                tokens.expect("{")
                tokens.expect("OFFSET")
                for _ in range(3):
                    tokens.number(f"the End Site OFFSET of {me.name!r}")
                tokens.expect("}")
            elif key == "root":
                raise tokens.error("more than one ROOT: dancegen reads files holding one skeleton", tokens.line)
            else:
                tokens.pos -= 1
                raise tokens.error(f"unexpected {tok!r} in joint {me.name!r}")
        if me.offset is None:
            raise tokens.error(f"joint {me.name!r} has no OFFSET", line)

    first = tokens.next("'HIERARCHY'")
    if first.lower() != "hierarchy":
        raise tokens.error(f"not a BVH file: expected 'HIERARCHY', found {first[:40]!r}", tokens.items[0][1])
    tokens.expect("ROOT")
    parse_joint(-1)
    if tokens.peek() is not None:
        tok = tokens.peek()
        if tok.lower() == "root":
            raise tokens.error("more than one ROOT: dancegen reads files holding one skeleton")
        raise tokens.error(f"unexpected {tok!r} after the skeleton")
    return joints


def _snap_fps(frame_time_text: str, frame_time: float) -> float:
    """1 / frame_time, made whole when frame_time is 1/n to the precision it was written with."""
    n = round(1.0 / frame_time)
    try:
        exponent = Decimal(frame_time_text).as_tuple().exponent
    except InvalidOperation:
        exponent = -12
    if n >= 1 and isinstance(exponent, int) and abs(frame_time - 1.0 / n) <= 0.5 * 10.0**exponent + 1e-15:
        return float(n)
    return 1.0 / frame_time


def read_bvh(
    path: str | os.PathLike, *, scale: float = CENTIMETRES, joint_order: Sequence[str] | None = None
) -> Motion:
    """Read a BVH file as a `Motion` on the file's own skeleton, in metres.

    scale: file units per metre (100: centimetres, the default; 1: metres; 39.37: inches).
    joint_order: the joint names in the order wanted (a permutation of the file's joints, parents
        before children). By default joints keep the file's (depth-first) order, except that a
        file holding exactly dancegen's SMPL skeleton (same names and tree, as `write_bvh`
        writes it) comes back in the canonical AIST++ order, so a written motion reads back as it was.
    Raises `UserError` (naming the file, line and problem) for files that are not valid BVH.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    path = require_file(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UserError(path, f"cannot read file ({e.strerror or e})") from None
    lines = text.splitlines()

    motion_at = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if not any(line.strip() for line in lines):
        raise UserError(path, "file is empty")
    first = next(i for i, line in enumerate(lines) if line.strip())
    head = lines[first].lstrip("\ufeff").split()
    if not head or head[0].upper() != "HIERARCHY":
        raise UserError(path, "not a BVH file: it does not start with HIERARCHY")
    if motion_at is None:
        raise UserError(path, "no MOTION section (truncated file?)")

    tokens = _Tokens(path, [lines[first].lstrip("\ufeff")] + lines[first + 1 : motion_at], first + 1)
    joints = _parse_hierarchy(tokens)
    column = 0
    for jt in joints:
        jt.first_column = column
        column += len(jt.channels)
    num_channels = column
    if num_channels == 0:
        raise UserError(path, "the skeleton declares no CHANNELS: there is no motion to read")

    # MOTION: "Frames: N", "Frame Time: t", then one line of values per frame.
    rest = [(n, line.strip()) for n, line in enumerate(lines[motion_at + 1 :], motion_at + 2) if line.strip()]
    if len(rest) < 2:
        raise UserError(path, "MOTION section ends before 'Frames:' and 'Frame Time:' (truncated file?)")
    (n_frames_line, frames_text), (n_time_line, time_text) = rest[0], rest[1]
    key, _, value = frames_text.partition(":")
    if key.strip().lower() != "frames" or not value.strip().isdigit():
        raise UserError(path, f"line {n_frames_line}: expected 'Frames: N', found {frames_text[:60]!r}")
    declared_frames = int(value)
    key, _, value = time_text.partition(":")
    try:
        frame_time = float(value) if key.strip().lower() == "frame time" else float("nan")
    except ValueError:
        frame_time = float("nan")
    if not (np.isfinite(frame_time) and frame_time > 0):
        raise UserError(path, f"line {n_time_line}: expected 'Frame Time: seconds' > 0, found {time_text[:60]!r}")
    fps = _snap_fps(value.strip(), frame_time)

    data = rest[2:]
    for k, (n, line) in enumerate(data):
        count = len(line.split())
        if count != num_channels:
            hint = " (truncated file?)" if k == len(data) - 1 and count < num_channels else ""
            raise UserError(path, f"line {n}: frame {k} has {count} values, expected {num_channels}{hint}")
    if len(data) != declared_frames:
        hint = " (truncated file?)" if len(data) < declared_frames else ""
        raise UserError(path, f"header says Frames: {declared_frames} but the file holds {len(data)} frames{hint}")
    if not data:
        raise UserError(path, "file holds no frames (Frames: 0)")
    try:
        values = np.array(" ".join(line for _, line in data).split(), dtype=np.float64)
    except ValueError:
        for k, (n, line) in enumerate(data):
            for tok in line.split():
                try:
                    float(tok)
                except ValueError:
                    raise UserError(path, f"line {n}: frame {k} holds {tok[:30]!r}, not a number") from None
        raise
    values = values.reshape(len(data), num_channels)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.argwhere(bad.any(axis=1))[0, 0])
        raise UserError(path, f"line {data[k][0]}: frame {k} holds NaN or infinite values")
    motion = _to_motion(path, joints, values, fps, scale)
    return _reorder(path, motion, joint_order)


def _reorder(path: Path, motion: Motion, joint_order: Sequence[str] | None) -> Motion:
    skeleton = motion.skeleton
    if joint_order is None:
        canonical = dict(zip(SMPL_JOINT_NAMES, SMPL_PARENTS))
        if sorted(skeleton.names) != sorted(SMPL_JOINT_NAMES) or any(
            canonical[n] != (SMPL_JOINT_NAMES.index(skeleton.names[p]) if p >= 0 else -1)
            for n, p in zip(skeleton.names, skeleton.parents)
        ):
            return motion
        joint_order = SMPL_JOINT_NAMES
    joint_order = tuple(joint_order)
    if sorted(joint_order) != sorted(skeleton.names):
        missing = sorted(set(skeleton.names) ^ set(joint_order))
        raise UserError(path, f"the file's joints do not match the joint order asked for (differ in {missing[:5]})")
    perm = [skeleton.index(n) for n in joint_order]
    new_index = {old: new for new, old in enumerate(perm)}
    parents = [new_index[skeleton.parents[old]] if skeleton.parents[old] >= 0 else -1 for old in perm]
    if parents[0] != -1 or any(not (0 <= p < i) for i, p in enumerate(parents[1:], 1)):
        raise ValueError("joint_order must list the root first and each parent before its children")
    return Motion(
        motion.fps,
        Skeleton(joint_order, tuple(parents), skeleton.offsets[perm]),
        motion.root_translation,
        motion.rotations[:, perm],
    )


def _to_motion(path: Path, joints: list[_Joint], values: np.ndarray, fps: float, scale: float) -> Motion:
    t = len(values)
    offsets = np.stack([jt.offset for jt in joints]) / scale
    root_translation = np.zeros((t, 3))
    rotations = np.zeros((t, len(joints), 3))
    for j, jt in enumerate(joints):
        positions = [(c, "XYZ".index(a)) for c, (a, k) in enumerate(jt.channels, jt.first_column) if k == "position"]
        rot = [(c, a) for c, (a, k) in enumerate(jt.channels, jt.first_column) if k == "rotation"]
        if positions:
            local = np.repeat(offsets[j][None], t, axis=0)
            for c, axis in positions:
                local[:, axis] = values[:, c] / scale
            if jt.parent < 0:
                root_translation = local - offsets[j]
            else:
                mean = local.mean(axis=0)
                spread = np.abs(local - mean).max()
                if spread > 1e-3:
                    warnings.warn(
                        f"{path}: joint {jt.name!r} translates relative to its parent by up to "
                        f"{spread * 1000:.1f} mm; dancegen keeps a rigid skeleton with its mean offset",
                        stacklevel=3,
                    )
                offsets[j] = mean
        if rot:
            angles = torch.from_numpy(values[:, [c for c, _ in rot]])
            matrices = euler_to_matrix(angles, "".join(a for _, a in rot), degrees=True)
            rotations[:, j] = matrix_to_axis_angle(matrices).numpy()
    skeleton = Skeleton(tuple(jt.name for jt in joints), tuple(jt.parent for jt in joints), offsets)
    return Motion(fps, skeleton, root_translation, rotations)
