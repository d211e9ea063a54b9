"""Skeletons: joint names, parents and rest offsets; the canonical SMPL 24-joint skeleton."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# SMPL's 24 joints in AIST++ order and naming (aist_plusplus_api), with the SMPL kinematic tree.
SMPL_JOINT_NAMES: tuple[str, ...] = (
    "root", "lhip", "rhip", "belly", "lknee", "rknee", "spine", "lankle",
    "rankle", "chest", "ltoes", "rtoes", "neck", "linshoulder", "rinshoulder", "head",
    "lshoulder", "rshoulder", "lelbow", "relbow", "lwrist", "rwrist", "lhand", "rhand",
)
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)
# Rest offsets of the SMPL neutral template's joints from their parents, metres, Y up, facing +Z,
# the body's left on +X (the values EDGE and Bailando use for their SMPL skeleton).
SMPL_OFFSETS = np.array([
    [0.0, 0.0, 0.0],
    [0.05858135, -0.08228004, -0.01766408],
    [-0.06030973, -0.09051332, -0.01354254],
    [0.00443945, 0.12440352, -0.03838522],
    [0.04345142, -0.38646945, 0.008037],
    [-0.04325663, -0.38368791, -0.00484304],
    [0.00448844, 0.1379564, 0.02682033],
    [-0.01479032, -0.42687458, -0.037428],
    [0.01905555, -0.4200455, -0.03456167],
    [-0.00226458, 0.05603239, 0.00285505],
    [0.04105436, -0.06028581, 0.12204243],
    [-0.03483987, -0.06210566, 0.13032329],
    [-0.0133902, 0.21163553, -0.03346758],
    [0.07170245, 0.11399969, -0.01889817],
    [-0.08295366, 0.11247234, -0.02370739],
    [0.01011321, 0.08893734, 0.05040987],
    [0.12292141, 0.04520509, -0.019046],
    [-0.11322832, 0.04685326, -0.00847207],
    [0.2553319, -0.01564902, -0.02294649],
    [-0.26012748, -0.01436928, -0.03126873],
    [0.26570925, 0.01269811, -0.00737473],
    [-0.26910836, 0.00679372, -0.00602676],
    [0.08669055, -0.01063603, -0.01559429],
    [-0.0887537, -0.00865157, -0.01010708],
], dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A kinematic tree: `parents[j] < j` (root first, parent -1), `offsets[j]` from the parent, metres.

    `offsets[0]` is the root's rest offset and is normally zero: the root's world position is the
    motion's root translation.
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray = field(repr=False)

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "parents", tuple(int(p) for p in self.parents))
        object.__setattr__(self, "offsets", np.asarray(self.offsets, dtype=np.float32).reshape(-1, 3))
        j = len(self.names)
        if len(self.parents) != j or len(self.offsets) != j:
            raise ValueError(f"skeleton has {j} names, {len(self.parents)} parents, {len(self.offsets)} offsets")
        if self.parents[0] != -1 or any(not (0 <= p < i) for i, p in enumerate(self.parents[1:], 1)):
            raise ValueError("skeleton parents must list the root first (-1) and each parent before its children")

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def children(self, joint: int) -> list[int]:
        return [i for i, p in enumerate(self.parents) if p == joint]

    def with_offsets(self, offsets: np.ndarray) -> "Skeleton":
        return Skeleton(self.names, self.parents, offsets)

    def rest_positions(self) -> np.ndarray:
        """World joint positions (J, 3) in the rest pose with the root at the origin."""
        pos = np.zeros((self.num_joints, 3), dtype=np.float32)
        for j, p in enumerate(self.parents):
            pos[j] = self.offsets[j] if p < 0 else pos[p] + self.offsets[j]
        return pos

    def bone_lengths(self) -> np.ndarray:
        return np.linalg.norm(self.offsets, axis=-1)

    def same_topology(self, other: "Skeleton") -> bool:
        return self.names == other.names and self.parents == other.parents

    def to_dict(self) -> dict:
        return {"names": list(self.names), "parents": list(self.parents), "offsets": self.offsets.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Skeleton":
        return cls(tuple(d["names"]), tuple(d["parents"]), np.asarray(d["offsets"], dtype=np.float32))


def smpl_skeleton(offsets: np.ndarray | None = None) -> Skeleton:
    """The canonical skeleton: SMPL's 24 joints in AIST++ order, SMPL neutral offsets by default."""
    return Skeleton(SMPL_JOINT_NAMES, SMPL_PARENTS, SMPL_OFFSETS if offsets is None else offsets)
