"""How a skeleton is drawn: its bones, which side each is on, how thick, where the head is.

Shared by the MP4 renderer and the HTML viewer so that both show the same figure. Sides come
from joint names (`lhip`/`rhip`, `LeftArm`/`RightArm`, `l_knee`/`r_knee`); thickness from the
bone's place in the body (trunk, limbs, hands and feet), as a fraction of the figure's height.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..motion import Skeleton

CENTRE, LEFT, RIGHT = 0, 1, 2

# RGB per side: trunk, the body's left, the body's right.
SIDE_COLOURS = np.array([[236, 232, 224], [66, 146, 240], [240, 110, 60]], dtype=np.float32)


def joint_side(name: str, names: set[str]) -> int:
    """LEFT, RIGHT or CENTRE from a joint's name: a left/right prefix whose mirror name exists."""
    low = name.lower()
    for left, right in (("left", "right"), ("l_", "r_"), ("l", "r")):
        for a, b, side in ((left, right, LEFT), (right, left, RIGHT)):
            if low.startswith(a) and any(n.lower() == b + low[len(a):] for n in names):
                return side
    return CENTRE


@dataclass(frozen=True)
class Figure:
    """Bones as (parent, child) joint pairs with a side and a radius in metres; the head joint."""

    bones: np.ndarray  # (B, 2) int: parent joint, child joint
    sides: np.ndarray  # (B,) int: CENTRE, LEFT or RIGHT
    radii: np.ndarray  # (B,) float: half the bone's thickness, metres
    trunk: np.ndarray  # (B,) bool: spine bones, drawn as one piece
    head: int | None  # joint the head sphere hangs on (drawn above it), None when unnamed
    head_radius: float  # metres
    neck: int | None  # the head joint's parent: the head sits beyond the head joint along neck→head

    @classmethod
    def of(cls, skeleton: Skeleton) -> "Figure":
        names = skeleton.names
        name_set = set(names)
        parents = skeleton.parents
        children = [[] for _ in names]
        for j, p in enumerate(parents):
            if p >= 0:
                children[p].append(j)
        lengths = np.linalg.norm(skeleton.offsets, axis=1)
        height = max(_chain_height(skeleton), 1e-3)  # root-to-head plus root-to-ankle, roughly

        bones, sides, radii, trunk = [], [], [], []
        for j, p in enumerate(parents):
            if p < 0 or lengths[j] < 1e-6:
                continue
            side = joint_side(names[j], name_set)
            if side == CENTRE and joint_side(names[p], name_set) != CENTRE:
                side = joint_side(names[p], name_set)
            leaf = not children[j]
            is_trunk = side == CENTRE and not any(k in names[j].lower() for k in ("neck", "head"))
            if side == CENTRE:  # the spine is the trunk; the neck is slimmer
                r = 0.085 if is_trunk else 0.045
            elif leaf:  # hands, toes
                r = 0.03
            elif joint_side(names[p], name_set) == CENTRE:  # hip and collar bones, inside the trunk
                r = 0.06
            else:
                r = 0.042
            bones.append((p, j))
            sides.append(side)
            radii.append(r * height / 1.55)
            trunk.append(is_trunk)
        head = next((j for j, n in enumerate(names) if "head" in n.lower() and "end" not in n.lower()), None)
        neck = None if head is None else (parents[head] if parents[head] >= 0 else None)
        return cls(np.array(bones, dtype=np.int64).reshape(-1, 2), np.array(sides, dtype=np.int64),
                   np.array(radii, dtype=np.float32), np.array(trunk, dtype=bool), head, 0.1 * height / 1.55, neck)

    def head_centre(self, positions: np.ndarray) -> np.ndarray | None:
        """(..., 3) head-sphere centres: the head joint pushed out along neck→head by most of a radius."""
        if self.head is None:
            return None
        h = positions[..., self.head, :]
        if self.neck is None:
            return h + [0.0, 0.6 * self.head_radius, 0.0]
        d = h - positions[..., self.neck, :]
        d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-6)
        return h + 0.6 * self.head_radius * d


def _chain_height(skeleton: Skeleton) -> float:
    """Rest height of the figure: the highest joint minus the lowest, from the rest offsets."""
    rest = np.zeros((skeleton.num_joints, 3))
    for j, p in enumerate(skeleton.parents):
        rest[j] = skeleton.offsets[j] + (rest[p] if p >= 0 else 0)
    return float(rest[:, 1].max() - rest[:, 1].min())
