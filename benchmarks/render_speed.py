"""Render speed: MP4 frames per second (drawing + encoding), with and without the music; HTML write time and size.

    .venv/bin/python benchmarks/render_speed.py [--seconds 60] [--size 640x480] [--sequence DANCE_T_5]
                                                [--data ../shared/data/dance_with_melody]

Uses the first SECONDS of a Dance with Melody sequence (DANCE_T_5, a travelling tango) with its
song, or a synthetic dance with a synthetic song when the data is absent. Prints a markdown table. Besides the
wall-clock rate it gives the CPU milliseconds per frame spent in Python (drawing) and in ffmpeg
(colour conversion, H.264, AAC): on a machine busy with other work the wall-clock rate drops, and
the CPU split says what an idle machine would do (the two run in parallel, one process each).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from dancegen.motion import Motion, smpl_skeleton
from dancegen.render import render_video, write_html

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dance_with_melody"


def _dance(data: Path, sequence: str, seconds: float, tmp: Path) -> tuple[str, Motion, Path, float]:
    if (data / sequence).exists():
        from dancegen.datasets import open_dataset

        seq = open_dataset("dance-with-melody", data).load(sequence)
        frames = int(round(seconds * seq.motion.fps))
        return f"{sequence} (Dance with Melody)", seq.motion[:frames], seq.song, seq.offset
    fps, n = 30, int(round(seconds * 30))
    t = np.arange(n) / fps
    rng = np.random.default_rng(0)
    rotations = 0.4 * np.sin(2 * np.pi * 1.0 * t[:, None, None] + rng.uniform(0, 6, (1, 24, 3)))
    root = np.stack([np.sin(0.2 * t), 0.9 + 0.03 * np.sin(4 * t), 0.5 * t / seconds], axis=1)
    song = tmp / "song.wav"
    sr = 44100
    ts = np.arange(int(sr * (seconds + 1))) / sr
    sf.write(song, (0.2 * np.sin(2 * np.pi * 220 * ts)).astype(np.float32), sr)
    return "synthetic", Motion(fps, smpl_skeleton(), root, rotations), song, 0.0


def _cpu() -> tuple[float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--sequence", default="DANCE_T_5")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        name, motion, song, offset = _dance(args.data, args.sequence, args.seconds, tmp)
        render_video(motion[: int(motion.fps)], tmp / "warmup.mp4", progress=False)  # imports, page cache
        frames = motion.resample(30).num_frames
        print(f"{name}: {motion.duration:.1f} s of dance, {frames} video frames at 30 fps, {size[0]}x{size[1]}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
        print("| output | wall s | frames/s | Python CPU ms/frame | ffmpeg CPU ms/frame | size MB |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, kwargs in (("mp4, no audio", {}), ("mp4 + music", {"song": song, "song_offset": offset})):
            out = tmp / "out.mp4"
            (py0, ff0), t0 = _cpu(), time.perf_counter()
            render_video(motion, out, size=size, progress=False, **kwargs)
            (py1, ff1), wall = _cpu(), time.perf_counter() - t0
            print(f"| {label} | {wall:.2f} | {frames / wall:.0f} | {(py1 - py0) / frames * 1e3:.2f} | "
                  f"{(ff1 - ff0) / frames * 1e3:.2f} | {out.stat().st_size / 1e6:.1f} |")
        out = tmp / "out.html"
        t0 = time.perf_counter()
        write_html(motion, out, song=song, song_offset=offset)
        wall = time.perf_counter() - t0
        print(f"| html + music | {wall:.2f} | | | | {out.stat().st_size / 1e6:.1f} |")


if __name__ == "__main__":
    main()
