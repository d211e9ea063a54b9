"""How well the canonical motion reproduces Dance with Melody's joints, and how long loading takes.

For every sequence: read and check the files, map the 23 markers to SMPL's 24 joints, solve the
rotations (dancegen.datasets.dance_with_melody), then compare forward kinematics of the Motion
with the mapped joint targets. Prints the mean per-joint position error (mm) per joint and per
sequence, the bone-length evidence behind the marker mapping, and the load + retarget time.

    .venv/bin/python benchmarks/retarget_dance_with_melody.py [FOLDER ...]

FOLDER defaults to ../shared/data/dance_with_melody and ../shared/data/dance_with_melody_motion_only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dancegen.datasets import dance_with_melody as dwm
from dancegen.motion.skeleton import SMPL_JOINT_NAMES

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT = [SHARED / "dance_with_melody", SHARED / "dance_with_melody_motion_only"]
# Bones between markers: name, (left a, left b), (right a, right b)
PAIRS = [
    ("hip-knee", ("left_hip", "left_knee"), ("right_hip", "right_knee")),
    ("knee-ankle", ("left_knee", "left_ankle"), ("right_knee", "right_ankle")),
    ("ankle-heel", ("left_ankle", "left_heel"), ("right_ankle", "right_heel")),
    ("ankle-toe", ("left_ankle", "left_toe"), ("right_ankle", "right_toe")),
    ("heel-toe", ("left_heel", "left_toe"), ("right_heel", "right_toe")),
    ("pelvis-hip", ("pelvis", "left_hip"), ("pelvis", "right_hip")),
    ("shoulder-elbow", ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow")),
    ("elbow-forearm", ("left_elbow", "left_forearm"), ("right_elbow", "right_forearm")),
    ("forearm-wrist", ("left_forearm", "left_wrist"), ("right_forearm", "right_wrist")),
    ("elbow-wrist", ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist")),
    ("pelvis-shoulder", ("pelvis", "left_shoulder"), ("pelvis", "right_shoulder")),
    ("head-shoulder (same side)", ("head_left", "left_shoulder"), ("head_right", "right_shoulder")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=DEFAULT)
    args = parser.parse_args()

    errors, per_sequence, lengths, seconds, frames = [], [], {p[0]: ([], []) for p in PAIRS}, 0.0, 0
    evidence, folders = [], []
    for folder in args.folders:
        if not folder.is_dir():
            print(f"skipping {folder}: not found")
            continue
        t0 = time.perf_counter()
        dataset = dwm.open(folder)
        folder_seconds, folder_errors = time.perf_counter() - t0, []
        for name in dataset.names:
            t0 = time.perf_counter()
            sequence = dataset.load(name)
            folder_seconds += time.perf_counter() - t0
            # The same targets the loader solved for (same markers, same drift removal).
            markers = dwm.remove_height_drift(dwm.read_markers(folder / name))
            targets = dwm.canonical_targets(markers)[0]
            error = np.linalg.norm(sequence.motion.positions() - targets, axis=-1) * 1000  # mm
            errors.append(error)
            folder_errors.append(error)
            per_sequence.append((f"{folder.name}/{name}", sequence.style, len(error), np.nanmean(error)))
            for pair, left, right in PAIRS:
                for side, (a, b) in zip(lengths[pair], (left, right)):
                    side.append(np.linalg.norm(markers[:, dwm.M[a]] - markers[:, dwm.M[b]], axis=-1))
            evidence.append((sequence.style, *side_evidence(markers)))
        folder_errors = np.concatenate(folder_errors)
        folders.append((folder.name, len(dataset), len(folder_errors), folder_seconds, np.nanmean(folder_errors)))
        seconds, frames = seconds + folder_seconds, frames + len(folder_errors)

    error = np.concatenate(errors)
    print("\n| folder | sequences | frames | minutes | load + retarget (s) | mean per-joint error (mm) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, count, n, s, e in folders + [("all", len(per_sequence), frames, seconds, np.nanmean(error))]:
        print(f"| {name} | {count} | {n} | {n / dwm.FPS / 60:.1f} | {s:.1f} | {e:.1f} |")
    print()
    print("| joint | source | mean error (mm) | 95th pct (mm) |")
    print("|---|---|---:|---:|")
    for j, joint in enumerate(SMPL_JOINT_NAMES):
        if np.isnan(error[:, j]).all():
            print(f"| {joint} | none (follows the forearm) | – | – |")
            continue
        source = f"marker {dwm.DIRECT[joint]}" if joint in dwm.DIRECT else "built"
        print(f"| {joint} | {source} | {np.nanmean(error[:, j]):.1f} | {np.nanpercentile(error[:, j], 95):.1f} |")
    direct = [dwm.J[j] for j in dwm.DIRECT] + [dwm.J["neck"], dwm.J["head"]]
    print(f"| **all 22 joints with targets** | | **{np.nanmean(error):.1f}** | {np.nanpercentile(error, 95):.1f} |")
    print(f"| joints on markers (15 + neck, head) | | {np.nanmean(error[:, direct]):.1f} | "
          f"{np.nanpercentile(error[:, direct], 95):.1f} |\n")

    print("| sequence | style | frames | mean error (mm) |")
    print("|---|---|---:|---:|")
    for name, style, n, e in per_sequence:
        print(f"| {name} | {style} | {n} | {e:.1f} |")

    print("\nMarker distances (cm): median over sequences of each sequence's median; std within a")
    print("sequence (mean over sequences); left minus right, % of right (mean and largest over sequences)")
    print("| between | left | left std | right | right std | L-R mean | L-R largest |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for pair, (left, right) in lengths.items():
        lm, rm = (np.array([np.median(x) * 100 for x in side]) for side in (left, right))
        ls, rs = (np.mean([x.std() * 100 for x in side]) for side in (left, right))
        diff = (lm - rm) / rm * 100
        print(f"| {pair} | {np.median(lm):.1f} | {ls:.1f} | {np.median(rm):.1f} | {rs:.1f} | "
              f"{diff.mean():+.1f} % | {diff[np.argmax(abs(diff))]:+.1f} % |")

    print("\nSides and facing, in dancegen's frame (after the mirror), per style: frames where the toes point")
    print("along forward = (left hip - right hip) x up; bent knees (> 3 cm off the hip-ankle line) pointing")
    print("forward; the head's turn from the shoulder line (+ = to the left); how far the head is ahead of")
    print("the pelvis point; which wrist is farther out to its own side")
    print("| style | sequences | toes forward | knees forward | head turn (deg) | head ahead (cm) | wrist farther out |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for style in sorted({e[0] for e in evidence}):
        rows = np.array([e[1:] for e in evidence if e[0] == style])
        outer = "left" if np.median(rows[:, 3]) > 0 else "right"
        print(f"| {style} | {len(rows)} | {rows[:, 0].mean():.0%} | {rows[:, 1].mean():.0%} | "
              f"{np.median(rows[:, 2]):+.0f} (range {rows[:, 2].min():+.0f}…{rows[:, 2].max():+.0f}) | "
              f"{np.median(rows[:, 4]) * 100:+.0f} | "
              f"{outer} ({(np.sign(rows[:, 3]) == np.sign(np.median(rows[:, 3]))).mean():.0%} of sequences) |")


def side_evidence(markers: np.ndarray) -> tuple[float, float, float, float, float]:
    """Facing and side checks on one sequence's world markers (dancegen's frame)."""
    m = {name: markers[:, i] for name, i in dwm.M.items()}
    up = np.array([0.0, 1.0, 0.0])

    def flat_unit(v):
        v = v * np.array([1.0, 0.0, 1.0])
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    left = flat_unit(m["left_hip"] - m["right_hip"])
    forward = np.cross(left, up)
    toes, knees = [], []
    for s in ("left", "right"):
        toes.append((flat_unit(m[f"{s}_toe"] - m[f"{s}_heel"]) * forward).sum(-1) > 0)
        bend = dwm._off_line(m[f"{s}_knee"], m[f"{s}_hip"], m[f"{s}_ankle"])
        bent = np.linalg.norm(bend, axis=-1) > 0.03
        knees.append(((bend * forward).sum(-1) > 0)[bent])
    shoulders, ears = flat_unit(m["left_shoulder"] - m["right_shoulder"]), flat_unit(m["head_left"] - m["head_right"])
    head_turn = np.degrees(np.arcsin(np.clip(np.cross(shoulders, ears)[:, 1], -1, 1)))
    # How far each wrist is out to its own side of the shoulder midpoint, left minus right.
    mid = (m["left_shoulder"] + m["right_shoulder"]) / 2
    outward = ((m["left_wrist"] - mid) * left).sum(-1) - ((m["right_wrist"] - mid) * -left).sum(-1)
    head_ahead = (((m["head_left"] + m["head_right"]) / 2 - m["pelvis"]) * forward).sum(-1)
    return (np.concatenate(toes).mean(), np.concatenate(knees).mean(), float(np.median(head_turn)),
            float(np.median(outward)), float(np.median(head_ahead)))


if __name__ == "__main__":
    main()
