"""Quick checks of a trained model's dances that the benchmark's averages hide: speed against the
ground truth per song, jitter, variety across seeds, and freezing or drift over a long song.

    .venv/bin/python benchmarks/motion_checks.py --model out/gan/best [--data data/dwm] [--songs 3] [--minutes 10]

For the first `--songs` songs of the prepared dataset's test split (the real music features): the mean
joint speed (m/s) of the real and the generated dance, their mean joint acceleration (m/s²: jitter
shows as more than the real one), the mean distance between the dances of seeds 0 and 1 (joints
relative to the root, m) and the generated speed per 10 s. Then a `--minutes`-long song of random
features: seconds to generate, the growth of the process's peak memory, and the speed per minute
(a model that freezes or blows up over time shows there). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from dancegen.data import PreparedDataset
from dancegen.models import Music, load_model


def joint_speed(positions: np.ndarray, fps: float) -> np.ndarray:
    """Mean joint speed (T - 1,) in m/s of positions (T, J, 3)."""
    return np.linalg.norm(np.diff(positions, axis=0), axis=-1).mean(-1) * fps


def joint_acceleration(positions: np.ndarray, fps: float) -> float:
    return float(np.linalg.norm(np.diff(positions, 2, axis=0), axis=-1).mean() * fps * fps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="data/dwm")
    parser.add_argument("--songs", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    data, model = PreparedDataset(args.data), load_model(args.model)
    fps = data.fps
    print("| song | frames | speed real | speed generated | acceleration real | acceleration generated "
          "| seeds 0–1 distance (m) | generated speed per 10 s |\n|---|---|---|---|---|---|---|---|")
    for name in data.split("test")[:args.songs]:
        music = Music({f: np.asarray(data.array(name, f)) for f in model.music_features}, fps)
        real = data.motion(name).positions()
        a, b = (model.generate(music, seed=s).positions() for s in (0, 1))
        speed = joint_speed(a, fps)
        chunks = " ".join(f"{speed[i:i + int(10 * fps)].mean():.2f}" for i in range(0, len(speed), int(10 * fps)))
        variety = np.linalg.norm((a - a[:, :1]) - (b - b[:, :1]), axis=-1).mean()
        print(f"| {name} | {len(real)} | {joint_speed(real, fps).mean():.2f} | {speed.mean():.2f} | "
              f"{joint_acceleration(real, fps):.1f} | {joint_acceleration(a, fps):.1f} | {variety:.3f} | {chunks} |")

    frames = int(args.minutes * 60 * model.fps)
    rng = np.random.default_rng(0)
    music = Music({f: rng.normal(size=(frames, d)).astype(np.float32)
                   for f, d in zip(model.music_features, model.music_dims)}, model.fps)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.time()
    motion = model.generate(music, seed=0)
    seconds = time.time() - started
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    speed = joint_speed(motion.positions(), motion.fps)
    minute = int(60 * motion.fps)
    per_minute = " ".join(f"{speed[i:i + minute].mean():.2f}" for i in range(0, len(speed), minute))
    print(f"\n| {args.minutes:g}-min song | seconds | peak memory growth (MB) | speed per minute |\n|---|---|---|---|\n"
          f"| {motion.num_frames} frames | {seconds:.1f} | {growth:.0f} | {per_minute} |")


if __name__ == "__main__":
    main()
